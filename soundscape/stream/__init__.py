"""The shared core: one scene as endless finished audio (controller -> conditioning -> generator ->
output chain) and the one generation loop that batches streams; adaptive steps, the watchdog, live
control, the consumer side play and serve share (playback.py) and the shared model options (options.py).
Used by play/, render/ and serve/.

May import: generator/, model/, audio/, scene/, ground modules. Never a command folder.
"""
