// Peer: a Socket.IO 4 room relay. A client names its room in the handshake
// query (`/socket.io/?EIO=4&transport=websocket&room=SLUG`); a `say` event is
// sent to the whole room, the sender included, with `io.to(room).emit`.
// WebSocket transport only, no compression. Nothing is stored.
// Run: node socketio_relay.js PORT (with NODE_PATH pointing at the benchmark's npm cache).
'use strict';
const http = require('http');
const { Server } = require('socket.io');

const port = Number(process.argv[2]);
const server = http.createServer();
const io = new Server(server, {
  transports: ['websocket'],
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
});

io.on('connection', (socket) => {
  const room = String(socket.handshake.query.room || 'lobby');
  socket.join(room);
  socket.on('say', (body) => io.to(room).emit('message', body));
});

server.listen(port, '127.0.0.1', 2048);
process.on('SIGTERM', () => process.exit(0));
