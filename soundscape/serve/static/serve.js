// Each scene's volume slider sets its <audio> element's volume; starting one scene pauses the others
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
}
