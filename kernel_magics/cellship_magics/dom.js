// DOM helpers shared by cellship's anywidget modules (view.js, jobstable.js). anywidget loads
// each module as one ES source with no bundler and no sibling imports, so the Python side
// (widget_source in view.py) puts this file in front of each module's text.

// h("div", {class: "x", onclick: f}, child, ...): an element with attributes, listeners and
// children; strings become text nodes (never parsed as HTML: user strings stay text).
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}
