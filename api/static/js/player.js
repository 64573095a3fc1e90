// The live player: a stream job's annotated HLS segments through hls.js (vendored, no CDN), kept
// a few seconds behind the newest segment; once the stream has ended, the same playlist plays as
// the recording. A browser without Media Source Extensions (an iPhone before iOS 17.1) plays
// the playlist itself, through a signed link: it cannot send the key header.

import Hls from "../vendor/hls.js/hls.light.min.mjs";

import { ApiError } from "./api.js";
import { keyHeaders } from "./auth.js";

// The engine writes 2 s segments. Playing 2 segments behind the newest one keeps the view about
// 4 s behind the playlist's edge (plus the segment being written); falling 5 behind (a stall, a
// hidden tab) jumps back, and smaller delays are caught up by playing up to 1.5x faster.
const HLS_CONFIG = {
  lowLatencyMode: true, // lets hls.js adjust the playback rate towards the target latency
  liveSyncDurationCount: 2,
  liveMaxLatencyDurationCount: 5,
  maxLiveSyncPlaybackRate: 1.5,
  maxBufferLength: 10, // a live view needs little buffer: memory stays small over hours
  backBufferLength: 30,
  enableWorker: false, // the ES module build has no inline worker; one camera transmuxes fine here
};
const RETRY_MS = 2000; // the playlist appears with the first segment: try again until then
const HLS_TYPE = "application/vnd.apple.mpegurl";
const RECORDING_ATTEMPTS = 3; // a live stream is waited for; an ended one's playlist is there or not
const LAG_EVERY_MS = 1000;

export class LivePlayer {
  constructor(video, note) {
    this.video = video;
    this.note = note;
    this.hls = null;
    this.source = null; // {playlistUrl, live}
    this.retryTimer = null;
    this.lagTimer = null;
    this.native = false; // the browser's own HLS player on a signed link, not hls.js
    video.addEventListener("error", () => {
      if (this.native && this.source) this.retryNative(this.source); // not there yet, or the link expired
    });
  }

  /**
   * Play ``playlistUrl`` (this API's). hls.js fetches the playlist and segments itself, so its
   * requests carry the API key header as the page's own calls do: no key or signature in a URL.
   * ``live``: follow the live edge; otherwise play the recording from its start.
   * ``signedUrl``: an async function giving the playlist's signed link, for the browser's own
   * HLS player where hls.js cannot run.
   */
  play(playlistUrl, { live = true, signedUrl = null } = {}) {
    const same = this.source && this.source.playlistUrl === playlistUrl && this.source.live === live;
    if (same && (this.hls || this.retryTimer || this.native)) return;
    this.stop();
    this.source = { playlistUrl, live, signedUrl };
    if (!Hls.isSupported()) {
      if (signedUrl && this.video.canPlayType(HLS_TYPE)) {
        this.playNatively(this.source);
        return;
      }
      this.showNote("This browser cannot play the live video (no Media Source Extensions, no HLS).");
      return;
    }
    this.showNote(live ? "Connecting to the live video…" : "Loading the recording…");
    this.startHls();
  }

  startHls() {
    const { playlistUrl, live } = this.source;
    const hls = new Hls({
      ...HLS_CONFIG,
      startPosition: live ? -1 : 0,
      xhrSetup: (xhr, url) => {
        xhr.open("GET", url, true); // opened here so that headers can be set
        if (new URL(url).origin === window.location.origin) {
          for (const [name, value] of Object.entries(keyHeaders())) xhr.setRequestHeader(name, value);
        }
      },
    });
    this.hls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, () => {
      if (live) this.video.play().catch(() => {}); // muted: browsers allow it without a click
    });
    hls.on(Hls.Events.ERROR, (_event, data) => this.onError(data));
    hls.on(Hls.Events.FRAG_CHANGED, (_event, { frag }) => {
      // the segment on screen (its sequence number is in its name, seg-NNNNNN.ts) and where it
      // starts on the video's clock: how far behind the camera the picture is can be told from them
      this.video.dataset.segment = String(frag.sn);
      this.video.dataset.segmentStart = frag.start.toFixed(3);
    });
    hls.loadSource(new URL(playlistUrl, window.location.href).href);
    hls.attachMedia(this.video);
    this.lagTimer = window.setInterval(() => this.showLag(), LAG_EVERY_MS);
  }

  async playNatively(source) {
    this.native = true;
    this.showNote(source.live ? "Connecting to the live video…" : "Loading the recording…");
    let url = null;
    try {
      url = await source.signedUrl();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
    }
    if (this.source !== source) return; // stopped, or another source, meanwhile
    if (!url) { // no segment yet (no live link to sign), or the API could not be reached
      this.retryNative(source);
      return;
    }
    this.video.src = url;
    if (source.live) this.video.play().catch(() => {}); // muted: allowed without a click
    this.showNote(source.live ? "Live, through this browser's own player." : "The stream has ended: this is its recording.");
  }

  retryNative(source) {
    if (this.retryTimer) return;
    this.showNote(source.live ? "Waiting for the first video segment…" : "The recording could not be loaded; retrying…");
    this.retryTimer = window.setTimeout(() => {
      this.retryTimer = null;
      if (this.source === source) this.playNatively(source);
    }, RETRY_MS);
  }

  onError(data) {
    if (!data.fatal) return;
    if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
      this.hls.recoverMediaError();
      return;
    }
    // most often: no segment written yet (the playlist is 404 until the first one), or the
    // network dropped. Start over shortly, as long as this source is still wanted.
    const source = this.source;
    this.teardown();
    this.source = source;
    source.failures = (source.failures || 0) + 1;
    if (!source.live && source.failures >= RECORDING_ATTEMPTS) { // an ended stream's files do not come later
      this.showNote("The recording could not be loaded (past its retention, or removed).");
      return;
    }
    this.showNote(source.live ? "Waiting for the first video segment…" : "The recording could not be loaded; retrying…");
    this.retryTimer = window.setTimeout(() => {
      this.retryTimer = null;
      if (this.source === source) this.startHls();
    }, RETRY_MS);
  }

  /** How far behind the picture is: behind the camera when the playlist dates its segments
   * (EXT-X-PROGRAM-DATE-TIME), else behind the newest segment. Shown, and kept as data-* for tests. */
  lag() {
    if (!this.hls || this.video.readyState < 2) return null;
    const date = this.hls.playingDate;
    const camera = date ? (Date.now() - date.getTime()) / 1000 : null;
    return { edge: this.hls.latency, camera };
  }

  showLag() {
    const lag = this.lag();
    if (!lag) return;
    const live = this.hls.levels.some((level) => level.details && level.details.live);
    this.note.dataset.edgeLagS = lag.edge.toFixed(2);
    if (lag.camera !== null) this.note.dataset.cameraLagS = lag.camera.toFixed(2);
    if (!live) {
      this.showNote("The stream has ended: this is its recording.");
      return;
    }
    this.showNote(lag.camera !== null
      ? `Live, about ${lag.camera.toFixed(1)} s behind the camera.`
      : `Live, ${lag.edge.toFixed(1)} s behind the newest video segment.`);
  }

  showNote(text) {
    if (this.note.textContent !== text) this.note.textContent = text;
  }

  teardown() {
    window.clearTimeout(this.retryTimer);
    window.clearInterval(this.lagTimer);
    this.retryTimer = null;
    this.lagTimer = null;
    if (this.hls) this.hls.destroy(); // detaches the video and frees its buffers
    this.hls = null;
    this.source = null;
    this.native = false;
  }

  stop() {
    this.teardown();
    this.video.removeAttribute("src");
    this.video.load();
    delete this.video.dataset.segment;
    delete this.video.dataset.segmentStart;
    this.showNote("");
    delete this.note.dataset.edgeLagS;
    delete this.note.dataset.cameraLagS;
  }
}
