// Message bodies are text, never HTML: they are built from text nodes and
// elements made here, and only http(s) addresses become links. Light
// formatting, the same rules as the server's `rich` filter
// (choir/templatetags/choir_text.py): ```code blocks```, `inline code`,
// **bold**, *italic* or _italic_, links, and @mentions.

const URL_PATTERN = /\bhttps?:\/\/[^\s<>"'`]+/gi;
// Punctuation that usually ends the sentence rather than the address.
const TRAILING = /[.,;:!?'"\]}>]+$/;
const CODE_BLOCK = /```(?:[\w+-]*\n)?([\s\S]*?)```/g;
const INLINE_CODE = /`([^`\n]+)`/g;
const BOLD = /\*\*(?=\S)([\s\S]*?\S)\*\*/g;
const ITALIC = /(?<![\w*])\*(?=[^\s*])([^*\n]*?[^\s*])\*(?![\w*])|(?<![\w_])_(?=[^\s_])([^_\n]*?[^\s_])_(?![\w_])/g;
// As the server finds mentions (choir/mentions.py): an @ that does not continue a word.
const MENTION = /(?<![\w.@+-])@([\w.@+-]{1,150})/g;

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

function element(tag, className, children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.append(...children);
  return node;
}

// Split `text` by `pattern`: matches go through `found(match)`, the text
// between them through `rest(text)`; both return arrays of nodes or strings.
function split(text, pattern, found, rest) {
  const out = [];
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    const taken = found(match);
    if (taken === null) continue;
    out.push(...rest(text.slice(last, match.index)), ...taken.nodes);
    last = match.index + taken.length;
  }
  out.push(...rest(text.slice(last)));
  return out;
}

export function mentionedName(raw) {
  // "@ann." at the end of a sentence names ann (the server tries "ann." first).
  return raw.replace(/[.@+-]+$/, "").toLowerCase();
}

function mentions(text, me) {
  return split(
    text,
    MENTION,
    (match) => {
      const span = element("span", "mention", [match[0]]);
      if (me && mentionedName(match[1]) === me.toLowerCase()) span.classList.add("me");
      return { nodes: [span], length: match[0].length };
    },
    (plain) => (plain ? [plain] : []),
  );
}

function emphasis(text, me) {
  return split(
    text,
    BOLD,
    (match) => ({ nodes: [element("strong", "", emphasis(match[1], me))], length: match[0].length }),
    (plain) =>
      split(
        plain,
        ITALIC,
        (match) => ({ nodes: [element("em", "", mentions(match[1] ?? match[2], me))], length: match[0].length }),
        (rest) => mentions(rest, me),
      ),
  );
}

function links(text, me) {
  return split(
    text,
    URL_PATTERN,
    (match) => {
      const url = trimAddress(match[0]);
      if (!url) return null;
      return { nodes: [safeLink(url) || url], length: url.length };
    },
    (plain) => emphasis(plain, me),
  );
}

function inline(text, me) {
  return split(
    text,
    INLINE_CODE,
    (match) => ({ nodes: [element("code", "", [match[1]])], length: match[0].length }),
    (plain) => links(plain, me),
  );
}

export function formatNodes(text, me = "") {
  return split(
    text,
    CODE_BLOCK,
    (match) => ({ nodes: [element("pre", "", [element("code", "", [match[1].replace(/\n$/, "")])])], length: match[0].length }),
    (plain) => inline(plain, me),
  );
}

// Fill `element` with `text`, formatted; `me` is the reader's name, whose mentions are marked.
export function renderText(target, text, me = "") {
  target.replaceChildren(...formatNodes(text, me));
}
