// Peer: the smallest room relay Node's `ws` allows, as in its broadcast example.
// A room is a set of sockets keyed by URL path; every text frame received is
// sent to everyone in the room, the sender included, one `send` (one frame
// built) per member. Nothing is stored.
// Run: node ws_relay.js PORT (with NODE_PATH pointing at the benchmark's npm cache).
'use strict';
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2]);
const rooms = new Map();
const wss = new WebSocketServer({ host: '127.0.0.1', port, backlog: 2048, perMessageDeflate: false });

wss.on('connection', (ws, req) => {
  let room = rooms.get(req.url);
  if (room === undefined) rooms.set(req.url, (room = new Set()));
  room.add(ws);
  ws.on('message', (data, isBinary) => {
    for (const client of room) {
      if (client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
    }
  });
  ws.on('close', () => room.delete(ws));
});

process.on('SIGTERM', () => process.exit(0));
