"""`soundscape render`: plain renders, loop files, the segment plan, the segmented driver and its
workers (local processes or Ray).

May import: stream/ and everything below it. Never play/ or serve/.
"""
