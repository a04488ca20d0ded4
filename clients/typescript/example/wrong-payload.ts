// Must NOT compile: `../check` fails when tsc accepts it. Each line marked `expect-error`
// must be reported by tsc with the text after the marker in its error.
import { io, type Socket } from "socket.io-client";
import type { ClientToServerEvents, ServerToClientEvents } from "@chat/client-types";

const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io("http://localhost:8000");

socket.emit("send_message", { conversationId: "c1", contnet: "hi" }); // expect-error: contnet
socket.emit("send_message", { conversationId: "c1", content: "hi", type: "video" }); // expect-error: "video"
socket.emit("typing_start", {}); // expect-error: conversationId
socket.on("new_message", (m) => console.log(m.senderID)); // expect-error: senderID
socket.emit("send_message", { conversationId: "c1", content: "hi" }, (r) => console.log(r.message)); // expect-error: 'message' does not exist
socket.on("user_status_change", (s) => console.log(s.status === "away")); // expect-error: "away"
