// The chat client: one WebSocket per room, JSON both ways. Each message from the hub
// arrives as {"topic", "id", "data"}; the page keeps the last id per room so a reload
// resumes where it stopped (since=<id>) instead of showing the history twice; when the
// room no longer keeps all it missed, the server says so ({"type": "gap"}).
"use strict";

const $ = (id) => document.getElementById(id);
let socket = null;

function show(text, kind) {
  const item = document.createElement("li");
  item.className = kind;
  item.textContent = text;  // textContent, never innerHTML: messages are untrusted
  $("messages").appendChild(item);
  item.scrollIntoView({block: "end"});
}

function connect(name, room) {
  if (socket) socket.close(1000);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const since = sessionStorage.getItem(`last:${room}`) || "0";
  const url = `${scheme}://${location.host}/ws/${encodeURIComponent(room)}` +
              `?name=${encodeURIComponent(name)}&since=${encodeURIComponent(since)}`;
  socket = new WebSocket(url);
  socket.onopen = () => {
    $("status").textContent = `in room "${room}" as ${name}`;
    $("send").hidden = false;
    $("text").focus();
  };
  socket.onmessage = (event) => {
    const envelope = JSON.parse(event.data);
    if (envelope.type === "gap") {  // from the server itself, not a room message
      show(`some messages were missed (the room keeps its last ${envelope.kept})`, "event");
      return;
    }
    sessionStorage.setItem(`last:${room}`, envelope.id);
    const msg = envelope.data;
    if (msg.type === "message") show(`${msg.user}: ${msg.text}`, "message");
    else if (msg.type === "join") show(`${msg.user} joined (${msg.count} here)`, "event");
    else if (msg.type === "leave") show(`${msg.user} left (${msg.count} here)`, "event");
  };
  socket.onclose = (event) => {
    $("status").textContent = `disconnected (code ${event.code})`;
    $("send").hidden = true;
  };
}

$("join").addEventListener("submit", (event) => {
  event.preventDefault();
  connect($("name").value, $("room").value);
});

$("send").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (text.trim() && socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({text}));
    $("text").value = "";
  }
});
