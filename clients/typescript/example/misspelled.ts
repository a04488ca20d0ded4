// Must NOT compile: `../check` fails when tsc accepts it. Each line marked `expect-error`
// must be reported by tsc with the text after the marker in its error.
import { io, type Socket } from "socket.io-client";
import type { ClientToServerEvents, ServerToClientEvents } from "@chat/client-types";

const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io("http://localhost:8000");

socket.emit("send_mesage", { conversationId: "c1", content: "hi" }); // expect-error: send_mesage
socket.on("new_mesage", (m: unknown) => console.log(m)); // expect-error: new_mesage
socket.emit("mark_as_red", { conversationId: "c1" }); // expect-error: mark_as_red
