// An uppercase echo server in Node.js: a design unlike anything in impl/
// (libuv's event loop, stream backpressure), used to show that the checker
// leaves a correct server in another language alone.
//
//   node examples/echo_server.js PORT
//   pytest --echo-server-cmd "node examples/echo_server.js {port}"
'use strict';
const net = require('net');

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error('usage: node echo_server.js PORT');
  process.exit(2);
}

// bytes.upper(): a-z (0x61-0x7a) become A-Z; every other byte is unchanged.
function upper(chunk) {
  const out = Buffer.from(chunk);
  for (let i = 0; i < out.length; i++) {
    if (out[i] >= 0x61 && out[i] <= 0x7a) out[i] -= 0x20;
  }
  return out;
}

// allowHalfOpen: after the client's FIN, keep writing until the echo is out.
const server = net.createServer({ allowHalfOpen: true }, (socket) => {
  socket.on('data', (chunk) => {
    if (!socket.write(upper(chunk))) {
      socket.pause(); // backpressure: stop reading until the echo drains
      socket.once('drain', () => socket.resume());
    }
  });
  socket.on('end', () => socket.end()); // flush, then FIN
  socket.on('error', () => socket.destroy()); // a reset ends this connection only
});

server.on('error', (err) => {
  console.error(`error: cannot listen on 127.0.0.1:${port}: ${err.message}`);
  process.exit(2);
});
server.listen(port, '127.0.0.1', () => console.log(`listening on 127.0.0.1:${port}`));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
