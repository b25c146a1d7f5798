/* The admin's trace page: a detection's frame link plays the trace's highlight video on the page
 * from that frame (the link's #t= media fragment is the time within that video). Without this
 * script the link still opens the video at that time in a new tab. */
(function () {
  "use strict";
  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest("a.momentry-frame");
    const video = document.getElementById("momentry-trace-video");
    if (!link || !video || event.ctrlKey || event.metaKey || event.shiftKey) return;
    const at = Number(new URL(link.href).hash.replace("#t=", ""));
    if (!(at >= 0)) return;
    event.preventDefault();
    const seek = () => {
      video.currentTime = at;
      video.play().catch(() => {});
    };
    if (video.readyState >= 1) seek();
    else {
      video.addEventListener("loadedmetadata", seek, { once: true });
      video.preload = "auto";
      video.load();
    }
    video.scrollIntoView({ block: "center" });
  });
})();
