//! What the fleet demonstration and the Redis measurement share: a
//! `redis-server` of their own (or the one `REDIS_URL` names), and a few
//! plain commands to it.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Redis server a demonstration uses: `REDIS_URL`'s, or a
/// `redis-server` started here on a free loopback port (stopped when
/// dropped).
pub struct Redis {
    url: String,
    addr: String,
    child: Option<Child>,
}

impl Redis {
    /// `REDIS_URL` if set; otherwise starts `redis-server` on a free port.
    /// If it is not installed, says how to get it and returns `None`.
    pub fn start_or_explain() -> Option<Redis> {
        if let Ok(url) = std::env::var("REDIS_URL") {
            let addr = url
                .trim_start_matches("redis://")
                .split(['/', '?'])
                .next()
                .unwrap_or("127.0.0.1:6379")
                .to_owned();
            return Some(Redis {
                url,
                addr,
                child: None,
            });
        }
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            println!(
                "This demonstration needs a Redis server, and `redis-server` is not installed.\n\
                 Install it (Debian, Ubuntu: `sudo apt-get install redis-server`; macOS: \
                 `brew install redis`) and run this again, or point REDIS_URL at a server:\n\
                 REDIS_URL=redis://127.0.0.1:6379 cargo run --release --example fleet"
            );
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port()
            .to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let redis = Redis {
            url: format!("redis://127.0.0.1:{port}/"),
            addr: format!("127.0.0.1:{port}"),
            child: Some(child),
        };
        let start = Instant::now();
        while redis.command(&["PING"]).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(redis)
    }

    /// `redis://...`
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the server was started here (not `REDIS_URL`'s).
    pub fn is_own(&self) -> bool {
        self.child.is_some()
    }

    /// Sends one command on a connection of its own and returns the reply
    /// (a status, a number or a bulk string) as text.
    pub fn command(&self, args: &[&str]) -> std::io::Result<String> {
        let stream = TcpStream::connect(&self.addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut request = format!("*{}\r\n", args.len());
        for a in args {
            request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        (&stream).write_all(request.as_bytes())?;
        let mut reader = BufReader::new(&stream);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        let bad = |what: &str| std::io::Error::other(format!("{what}: {line}"));
        match line.as_bytes().first() {
            Some(b'+' | b':') => Ok(line[1..].to_owned()),
            Some(b'$') => {
                let len: usize = line[1..].parse().map_err(|_| bad("bad length"))?;
                let mut body = vec![0; len + 2];
                std::io::Read::read_exact(&mut reader, &mut body)?;
                body.truncate(len);
                String::from_utf8(body).map_err(|_| bad("not text"))
            }
            _ => Err(bad("error reply")),
        }
    }

    /// `calls` of `command` in `INFO commandstats`.
    pub fn calls(&self, command: &str) -> u64 {
        let info = self.command(&["INFO", "commandstats"]).unwrap_or_default();
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap_or(0))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
