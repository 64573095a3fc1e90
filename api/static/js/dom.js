// Small DOM helpers: build elements without innerHTML (so no text from the API is ever parsed as HTML).

/** An element with optional class and text, for building DOM without innerHTML. */
export function element(tag, { className, text, attrs } = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  return node;
}

/** Tell screen-reader users something happened (a polite, non-interrupting announcement). */
export function announce(message) {
  const announcer = document.getElementById("announcer");
  announcer.textContent = "";
  // a fresh text node after a tick makes screen readers read the same message twice if it repeats
  window.setTimeout(() => {
    announcer.textContent = message;
  }, 50);
}
