// Polling that never overlaps itself, chooses its own pace, and idles while the tab is hidden.

const HIDDEN_DELAY_MS = 30000;
const AFTER_BUG_DELAY_MS = 10000;

export class Poller {
  /**
   * ``tick`` is an async function returning the milliseconds to wait before the next tick,
   * or null to stop. It is never called again while a previous call is running.
   */
  constructor(tick) {
    this.tick = tick;
    this.timer = null;
    this.running = false; // a tick is in flight
    this.active = false; // started and not stopped
    this.again = false; // now() was called during a tick: run once more right after it
    document.addEventListener("visibilitychange", () => {
      if (this.active && document.visibilityState === "visible") this.now();
    });
  }

  start() {
    this.active = true;
    this.now();
  }

  stop() {
    this.active = false;
    window.clearTimeout(this.timer);
    this.timer = null;
  }

  /** Tick as soon as possible (after the running one, if any). */
  now() {
    if (!this.active) return;
    window.clearTimeout(this.timer);
    this.timer = null;
    if (this.running) {
      this.again = true;
      return;
    }
    this.run();
  }

  async run() {
    this.running = true;
    this.again = false;
    let delay = null;
    try {
      delay = await this.tick();
    } catch (error) {
      // ticks handle the API's errors themselves; this is a bug, so keep going, slowly
      console.error(error);
      delay = AFTER_BUG_DELAY_MS;
    } finally {
      this.running = false;
    }
    if (!this.active) return;
    if (this.again) {
      this.run();
    } else if (delay !== null && delay !== undefined) {
      const wait = document.visibilityState === "hidden" ? Math.max(delay, HIDDEN_DELAY_MS) : delay;
      this.timer = window.setTimeout(() => this.now(), wait);
    }
  }
}
