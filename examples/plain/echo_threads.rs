// A plain echo server in Rust, standard library only: a thread per
// connection copying what it reads back to the client (io::copy), the
// common shape of std::net echo servers. Written for this repository.
//
//   rustc -O -o echo_threads examples/plain/echo_threads.rs && ./echo_threads PORT
//   pytest --echo-server-cmd "./echo_threads {port}" --echo-transform identity
use std::io;
use std::net::{TcpListener, TcpStream};
use std::thread;

fn echo(stream: TcpStream) -> io::Result<()> {
    let mut reader = stream.try_clone()?;
    let mut writer = stream;
    io::copy(&mut reader, &mut writer)?;
    // The client's EOF: all of its echo is written; dropping both handles closes.
    Ok(())
}

fn main() -> io::Result<()> {
    let port = std::env::args().nth(1).expect("usage: echo_threads PORT");
    let listener = TcpListener::bind(("127.0.0.1", port.parse::<u16>().expect("a port")))?;
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                thread::spawn(move || {
                    let _ = echo(stream);
                });
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
    Ok(())
}
