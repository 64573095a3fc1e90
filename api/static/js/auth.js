// The API key: asked for once when the API answers 401, kept in sessionStorage (this tab only).

const STORAGE_KEY = "cattlecounter.apiKey";

let pendingPrompt = null; // one prompt at a time, however many requests were refused
let memoryKey = ""; // fallback when sessionStorage is disabled (private modes, strict settings)

/** The key this tab holds, or "" when none was given. */
export function currentApiKey() {
  try {
    return sessionStorage.getItem(STORAGE_KEY) || memoryKey;
  } catch {
    return memoryKey;
  }
}

function storeApiKey(key) {
  try {
    sessionStorage.setItem(STORAGE_KEY, key);
  } catch {
    /* storage disabled: keep working for this page view */
  }
  memoryKey = key;
}

/** Headers that carry the key, for fetch and XHR calls to this API. */
export function keyHeaders() {
  const key = currentApiKey();
  return key ? { "X-API-Key": key } : {};
}

/**
 * Show the key form and resolve once the user has entered a key.
 * Concurrent callers share one prompt. ``refusedKey`` is the key the server just refused.
 */
export function askForApiKey(refusedKey) {
  if (!pendingPrompt) {
    pendingPrompt = showPrompt(refusedKey).finally(() => {
      pendingPrompt = null;
    });
  }
  return pendingPrompt;
}

function showPrompt(refusedKey) {
  const dialog = document.getElementById("api-key-dialog");
  const form = document.getElementById("api-key-form");
  const input = document.getElementById("api-key-input");
  const reason = document.getElementById("api-key-reason");
  reason.textContent = refusedKey
    ? "That API key was not accepted. Check it and try again."
    : "This service asks for an API key. Ask whoever runs it for one.";
  input.value = "";
  return new Promise((resolve) => {
    function onSubmit(event) {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) {
        input.focus();
        return;
      }
      form.removeEventListener("submit", onSubmit);
      dialog.removeEventListener("cancel", onCancel);
      storeApiKey(key);
      dialog.close();
      resolve(key);
    }
    // Escape would leave the page with nothing to show: keep the dialog open.
    function onCancel(event) {
      event.preventDefault();
    }
    form.addEventListener("submit", onSubmit);
    dialog.addEventListener("cancel", onCancel);
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
}
