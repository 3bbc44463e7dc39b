// A correct echo server in Java: one thread, an NIO Selector, a queue per
// connection bounded at LIMIT bytes (reading stops until it drains), echo of
// ASCII a-z uppercased, the rest unchanged, close after EOF once the queue is
// flushed.  Checked as a user would check theirs:
//
//   pytest --echo-server-cmd "java examples/EchoServer.java {port}"
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.*;
import java.util.*;

public class EchoServer {
    static final int LIMIT = 256 * 1024;

    static class Conn {
        final ArrayDeque<ByteBuffer> queue = new ArrayDeque<>();
        int queued = 0;
        boolean eof = false;
    }

    public static void main(String[] args) throws IOException {
        int port = Integer.parseInt(args[0]);
        Selector selector = Selector.open();
        ServerSocketChannel server = ServerSocketChannel.open();
        server.bind(new InetSocketAddress("127.0.0.1", port), 1024);
        server.configureBlocking(false);
        server.register(selector, SelectionKey.OP_ACCEPT);
        ByteBuffer buf = ByteBuffer.allocate(65536);
        while (true) {
            selector.select();
            Iterator<SelectionKey> it = selector.selectedKeys().iterator();
            while (it.hasNext()) {
                SelectionKey key = it.next();
                it.remove();
                try {
                    if (!key.isValid()) continue;
                    if (key.isAcceptable()) {
                        SocketChannel c;
                        try {
                            c = server.accept();
                        } catch (IOException e) {
                            continue;
                        }
                        if (c == null) continue;
                        c.configureBlocking(false);
                        c.register(selector, SelectionKey.OP_READ, new Conn());
                        continue;
                    }
                    SocketChannel c = (SocketChannel) key.channel();
                    Conn conn = (Conn) key.attachment();
                    if (key.isReadable()) {
                        buf.clear();
                        int n = c.read(buf);
                        if (n < 0) {
                            conn.eof = true;
                        } else if (n > 0) {
                            buf.flip();
                            ByteBuffer out = ByteBuffer.allocate(n);
                            for (int i = 0; i < n; i++) {
                                byte b = buf.get();
                                if (b >= 'a' && b <= 'z') b = (byte) (b - 32);
                                out.put(b);
                            }
                            out.flip();
                            conn.queue.add(out);
                            conn.queued += n;
                        }
                    }
                    if (key.isValid() && (key.isWritable() || !conn.queue.isEmpty())) {
                        while (!conn.queue.isEmpty()) {
                            ByteBuffer head = conn.queue.peek();
                            int w = c.write(head);
                            conn.queued -= w;
                            if (head.hasRemaining()) break;
                            conn.queue.poll();
                        }
                    }
                    if (conn.eof && conn.queue.isEmpty()) {
                        key.cancel();
                        c.close();
                        continue;
                    }
                    int ops = 0;
                    if (!conn.eof && conn.queued < LIMIT) ops |= SelectionKey.OP_READ;
                    if (!conn.queue.isEmpty()) ops |= SelectionKey.OP_WRITE;
                    key.interestOps(ops);
                } catch (IOException e) {
                    key.cancel();
                    try { key.channel().close(); } catch (IOException ignored) {}
                }
            }
        }
    }
}
