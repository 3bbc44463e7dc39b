// The echo server of Node.js' `net` documentation (net.createServer), as
// published: https://nodejs.org/api/net.html#netcreateserveroptions-connectionlistener
// The one change: the port comes from the command line instead of 8124.
//
//   node examples/plain/echo_server.js PORT
//   pytest --echo-server-cmd "node examples/plain/echo_server.js {port}" --echo-transform identity
const net = require('node:net');
const server = net.createServer((c) => {
  // 'connection' listener.
  console.log('client connected');
  c.on('end', () => {
    console.log('client disconnected');
  });
  c.write('hello\r\n');
  c.pipe(c);
});
server.on('error', (err) => {
  throw err;
});
server.listen(Number(process.argv[2]), () => {
  console.log('server bound');
});
