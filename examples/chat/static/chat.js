// The chat page, on legato's browser client (served by the App at /_legato/client.js;
// docs/channels.md). The client keeps one WebSocket for every room, reconnects by
// itself (backoff with jitter, or when the server says), resumes each room from the
// last message it saw, and sends what was typed while it was away once it is back:
// every message shows once, whatever happened to the connection in between.
import { Client } from "/_legato/client.js";

const $ = (id) => document.getElementById(id);
const client = new Client("/_legato");
let room = null;
let roomName = "";
const members = new Map(); // conn -> name, from presence

function show(text, kind) {
  const item = document.createElement("li");
  item.className = kind;
  item.textContent = text; // textContent, never innerHTML: messages are untrusted
  $("messages").appendChild(item);
  item.scrollIntoView({ block: "end" });
}

function status() {
  const state = client.state;
  $("status").textContent = room === null ? `${state}`
    : state === "connected" ? `in room "${roomName}" (${members.size} here)`
    : `${state}: messages you send now go out when the connection is back`;
  $("status").dataset.state = state;
}

client.on("state", status);

function join(name, wanted) {
  if (room !== null) room.leave();
  members.clear();
  roomName = wanted;
  // since "0": a page that joins gets what the room keeps, then what comes live.
  room = client.join(`room:${wanted}`, { data: { name }, since: "0" });
  room.on("message", (msg) => {
    if (msg.type === "message") show(`${msg.user}: ${msg.text}`, "message");
    else if (msg.type === "join") show(`${msg.user} joined`, "event"); // plain clients
    else if (msg.type === "leave") show(`${msg.user} left`, "event");
  });
  room.on("joined", (member) => {
    if (!members.has(member.conn)) show(`${member.data.name} joined`, "event");
    members.set(member.conn, member.data.name);
    status();
  });
  room.on("left", (member) => {
    if (members.delete(member.conn)) show(`${member.data.name} left`, "event");
    status();
  });
  room.on("state", (state) => {
    if (state !== "joined") return;
    room.presence().then((list) => { // who was already here (joined/left keep it up to date)
      for (const m of list) members.set(m.conn, m.data.name);
      status();
    }).catch(() => {});
  });
  room.on("lost", (info) => {
    show(info.reason === "epoch"
      ? "the server lost the room's history: some messages were missed"
      : "some messages were missed", "event");
  });
  room.on("error", (err) => show(`error: ${err.message}`, "event"));
  $("send").hidden = false;
  $("text").focus();
  status();
}

$("join").addEventListener("submit", (event) => {
  event.preventDefault();
  join($("name").value, $("room").value);
});

$("send").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (text.trim() && room !== null) {
    room.publish({ text }).catch((err) => show(`not sent: ${err.message}`, "event"));
    $("text").value = "";
  }
});
