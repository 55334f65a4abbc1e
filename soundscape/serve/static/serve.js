// Each scene's volume slider sets its <audio> element's volume; its width slider sets the stream's ?width=
// (the stereo width it is generated with, from when it starts: a paused stream starts anew); starting one
// scene pauses the others
// (each stream is generated for this listener alone, so a paused one frees its slot on the server).
// The Media Session API puts the playing scene on a phone's lock screen and under its media keys.
const media = "mediaSession" in navigator ? navigator.mediaSession : null;
let current = null; // the <audio> last started

function release(audio) {
  audio.pause();
  audio.removeAttribute("src");  // drop the connection: the server frees the listener's slot
  audio.load();
  audio.src = audio.dataset.src;
}

if (media) {
  const handlers = {
    play: () => { if (current) current.play(); },
    pause: () => { if (current) current.pause(); },
    stop: () => { if (current) release(current); media.playbackState = "none"; },
  };
  for (const [action, handler] of Object.entries(handlers)) {
    try { media.setActionHandler(action, handler); } catch (_) { /* an action this browser does not know */ }
  }
}

function showInMediaSession(scene, audio) {
  current = audio;
  if (!media) return;
  const icon = document.querySelector('link[rel="icon"]');
  media.metadata = new MediaMetadata({
    title: scene.querySelector("h2").textContent, artist: "soundscape",
    artwork: icon ? [{ src: icon.href, sizes: "any", type: "image/svg+xml" }] : [],
  });
  media.playbackState = "playing";
}

for (const scene of document.querySelectorAll(".scene")) {
  const audio = scene.querySelector("audio");
  const volume = scene.querySelector(".volume");
  audio.volume = Number(volume.value);
  volume.addEventListener("input", () => { audio.volume = Number(volume.value); });
  audio.addEventListener("play", () => {
    for (const other of document.querySelectorAll("audio")) {
      if (other !== audio && !other.paused) release(other);
    }
    showInMediaSession(scene, audio);
  });
  audio.addEventListener("pause", () => { if (media && audio === current) media.playbackState = "paused"; });
  audio.dataset.src = audio.getAttribute("src");
  const width = scene.querySelector(".width");
  const withWidth = () => {
    const url = new URL(audio.dataset.src, location.href);
    url.searchParams.set("width", width.value);
    return url.pathname + url.search;
  };
  width.addEventListener("change", () => {
    audio.dataset.src = withWidth();
    if (audio.paused) { audio.src = audio.dataset.src; }
  });
}
