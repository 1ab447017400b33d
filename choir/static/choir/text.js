// Message bodies are text, never HTML: they are built from text nodes, and
// only http(s) addresses become links.

const URL_PATTERN = /\bhttps?:\/\/[^\s<>"'`]+/gi;
// Punctuation that usually ends the sentence rather than the address.
const TRAILING = /[.,;:!?'"\]}>]+$/;

function trimAddress(raw) {
  let url = raw.replace(TRAILING, "");
  // Keep a closing parenthesis only when the address opened one (Wikipedia).
  while (url.endsWith(")") && (url.match(/\(/g) || []).length < (url.match(/\)/g) || []).length) {
    url = url.slice(0, -1).replace(TRAILING, "");
  }
  return url;
}

export function safeLink(raw) {
  let parsed;
  try {
    parsed = new URL(raw);
  } catch {
    return null;
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return null;
  const a = document.createElement("a");
  a.href = parsed.href;
  a.textContent = raw;
  a.rel = "noopener noreferrer nofollow";
  a.target = "_blank";
  return a;
}

export function renderText(element, text) {
  element.replaceChildren();
  let last = 0;
  for (const match of text.matchAll(URL_PATTERN)) {
    const url = trimAddress(match[0]);
    if (!url) continue;
    element.append(text.slice(last, match.index));
    element.append(safeLink(url) || url);
    last = match.index + url.length;
  }
  element.append(text.slice(last));
}
