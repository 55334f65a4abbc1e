// Each scene's volume slider sets its <audio> element's volume; its width slider sets the stream's ?width=
// (the stereo width it is generated with, from when it starts: a paused stream starts anew); starting one
// scene pauses the others
// (each stream is generated for this listener alone, so a paused one frees its slot on the server).
for (const scene of document.querySelectorAll(".scene")) {
  const audio = scene.querySelector("audio");
  const volume = scene.querySelector(".volume");
  audio.volume = Number(volume.value);
  volume.addEventListener("input", () => { audio.volume = Number(volume.value); });
  audio.addEventListener("play", () => {
    for (const other of document.querySelectorAll("audio")) {
      if (other !== audio && !other.paused) {
        other.pause();
        other.removeAttribute("src");  // drop the connection: the server frees the listener's slot
        other.load();
        other.src = other.dataset.src;
      }
    }
  });
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
