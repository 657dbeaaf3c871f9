// The live page: a snapshot, then server-sent updates. Chat text is only ever set with
// textContent, never parsed as HTML.
"use strict";

const state = { conversations: new Map(), alerts: [], selected: null, dirty: false };
const MAX_ALERTS = 200;
const SVG = "http://www.w3.org/2000/svg";

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function tone(score) {
  if (score === null || score === undefined) return "neu";
  return score <= -0.1 ? "neg" : score >= 0.1 ? "pos" : "neu";
}

function fmt(score) {
  return score === null || score === undefined ? "–" : (score >= 0 ? "+" : "") + score.toFixed(2);
}

function sparkline(scores) {
  const w = 90, h = 22, svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  const zero = document.createElementNS(SVG, "line");
  zero.setAttribute("x1", 0); zero.setAttribute("x2", w);
  zero.setAttribute("y1", h / 2); zero.setAttribute("y2", h / 2);
  svg.appendChild(zero);
  if (scores.length > 1) {
    const pts = scores.map((s, i) =>
      `${(i * w / (scores.length - 1)).toFixed(1)},${((1 - s) * h / 2).toFixed(1)}`);
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", pts.join(" "));
    svg.appendChild(line);
  }
  return svg;
}

const ARROWS = { improving: "↗ improving", stable: "→ stable", worsening: "↘ worsening" };
// what each alert rule means to a supervisor (worker/rules.py; the raw name is the tooltip)
const RULES = {
  negative_level: "unhappy", negative_sentiment: "complaint",
  negative_streak: "negative streak", sharp_drop: "sharp drop",
};

function renderConversations() {
  state.dirty = false;
  const body = document.querySelector("#conversations tbody");
  const rows = [...state.conversations.values()].sort((a, b) => b.risk - a.risk);
  body.replaceChildren(...rows.map((c) => {
    const tr = el("tr", c.alerts ? "alerted" : "");
    if (c.id === state.selected) tr.classList.add("selected");
    tr.dataset.conversationId = c.id;
    tr.append(el("td", "", c.id), el("td", "", c.turns));
    const score = el("td");
    score.append(el("span", tone(c.running_score), fmt(c.running_score)), sparkline(c.scores));
    tr.append(score, el("td", "", ARROWS[c.trend_label] || c.trend_label),
      el("td", c.alerts ? "neg" : "", c.alerts), el("td", "why", c.topic_words.join(", ")));
    tr.addEventListener("click", () => select(c.id));
    return tr;
  }));
  document.getElementById("counts").textContent =
    `${rows.length} conversations · ${state.alerts.length} alerts`;
}

function alertItem(a) {
  const li = el("li");
  li.dataset.alertId = a.alert_id;
  li.dataset.conversationId = a.conversation_id;
  const head = el("div", "meta");
  const rules = el("span", "rules", a.rules.map((r) => RULES[r] || r).join(" + "));
  rules.title = a.rules.join(", ");
  head.append(rules, document.createTextNode(
    `  ${a.conversation_id} #${a.seq} · score ${fmt(a.score)} · ${a.ts.slice(11, 19)}`));
  li.append(head);
  if (a.text) li.append(el("div", "text", a.text));
  const why = [a.emotion, a.aspect].filter(Boolean).join(" · ");
  const words = a.topic_words.length ? `topic: ${a.topic_words.join(", ")}` : "";
  const labels = `satisfaction ${a.satisfaction || "–"} · sentiment ${a.sentiment || "–"}`;
  li.append(el("div", "why", [why, labels, words].filter(Boolean).join("  |  ")));
  li.addEventListener("click", () => select(a.conversation_id));
  return li;
}

function addAlert(a, atTop) {
  const list = document.getElementById("alerts");
  if (atTop) {
    state.alerts.unshift(a);
    list.prepend(alertItem(a));
    while (state.alerts.length > MAX_ALERTS) { state.alerts.pop(); list.lastChild.remove(); }
  } else {
    state.alerts.push(a);
    list.append(alertItem(a));
  }
}

function probs(label, p) {
  if (!p) return "";
  return `${label} ` + Object.entries(p).map(([k, v]) => `${k} ${(v * 100).toFixed(0)}%`)
    .join(" / ");
}

// the turn's text with its aspect terms marked; offsets count code points, as Array.from does
function marked(text, aspects) {
  const div = el("div", "text"), chars = Array.from(text);
  let at = 0;
  for (const a of [...aspects].sort((x, y) => x.start - y.start)) {
    if (a.start < at || a.end > chars.length) continue;
    div.append(document.createTextNode(chars.slice(at, a.start).join("")));
    const m = el("mark", a.polarity, chars.slice(a.start, a.end).join(""));
    m.title = `${a.polarity} aspect (${(a.confidence * 100).toFixed(0)}%)`;
    div.append(m);
    at = a.end;
  }
  div.append(document.createTextNode(chars.slice(at).join("")));
  return div;
}

function turnItem(t) {
  const li = el("li", t.role);
  li.dataset.seq = t.seq;
  const head = el("div", "meta");
  head.append(document.createTextNode(`#${t.seq} ${t.role} · `),
    el("span", tone(t.score), `score ${fmt(t.score)}`),
    document.createTextNode(` · satisfaction ${t.satisfaction || "–"} · sentiment ` +
      `${t.sentiment || "–"} · level ${t.label}`));
  li.append(head, t.text === null ? el("div", "text", "(text not echoed)")
    : marked(t.text, t.aspects || []));
  const extra = [];
  if (t.emotions && t.emotions.labels.length) {
    extra.push(`emotions: ${t.emotions.labels.join(", ")}`);
  }
  if (t.aspects && t.aspects.length) extra.push(
    "aspects: " + t.aspects.map((a) => `${a.text} (${a.polarity})`).join(", "));
  if (extra.length) li.append(el("div", "why", extra.join("  |  ")));
  li.append(el("div", "probs", [probs("satisfaction", t.satisfaction_probs),
    probs("sentiment", t.sentiment_probs)].filter(Boolean).join("  ·  ")));
  return li;
}

async function select(cid) {
  state.selected = cid;
  state.dirty = true;
  const res = await fetch(`/api/conversations/${encodeURIComponent(cid)}`);
  if (!res.ok) return;
  const detail = await res.json();
  if (state.selected !== cid) return;
  document.getElementById("detail-title").textContent = `Conversation ${cid}`;
  document.getElementById("turns").replaceChildren(...detail.turns.map(turnItem));
}

function setStatus(s) {
  const feed = document.getElementById("feed");
  feed.className = "feed " + (s.connected ? "up" : "down");
  feed.textContent = s.connected ? "live" : "broker unreachable, retrying";
}

function onUpdate(u) {
  for (const id of u.evicted || []) state.conversations.delete(id);
  state.conversations.set(u.conversation.id, u.conversation);
  state.dirty = true;
}

function connect() {
  const source = new EventSource("/events");
  source.addEventListener("snapshot", (e) => {
    const snap = JSON.parse(e.data);
    state.conversations = new Map(snap.conversations.map((c) => [c.id, c]));
    state.alerts = [];
    document.getElementById("alerts").replaceChildren();
    snap.alerts.forEach((a) => addAlert(a, false));
    setStatus(snap.status);
    state.dirty = true;
  });
  source.addEventListener("turn", (e) => {
    const u = JSON.parse(e.data);
    onUpdate(u);
    for (const [id, text] of Object.entries(u.alert_texts || {})) {
      const item = document.querySelector(`#alerts li[data-alert-id="${CSS.escape(id)}"]`);
      if (item && !item.querySelector(".text")) {
        item.children[0].after(el("div", "text", text));
      }
    }
    if (u.conversation.id === state.selected) {
      document.getElementById("turns").append(turnItem(u.turn));
    }
  });
  source.addEventListener("alert", (e) => {
    const u = JSON.parse(e.data);
    onUpdate(u);
    addAlert(u.alert, true);
  });
  source.addEventListener("expired", (e) => {
    JSON.parse(e.data).ids.forEach((id) => state.conversations.delete(id));
    state.dirty = true;
  });
  source.addEventListener("status", (e) => setStatus(JSON.parse(e.data)));
  source.onerror = () => setStatus({ connected: false });
}

setInterval(() => { if (state.dirty) renderConversations(); }, 250);
connect();
