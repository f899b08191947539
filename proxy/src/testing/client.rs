//! A small HTTP/1.1 client for tests: raw bytes out, a parsed response in, keep-alive aware.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header fields in wire order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The decoded body.
    pub body: Vec<u8>,
    /// Informational (1xx) responses that came first.
    pub informational: Vec<u16>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One client connection.
#[derive(Debug)]
pub struct Client {
    stream: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

/// How a body read ended.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyEnd {
    /// The framing said the body was complete.
    Complete,
    /// The connection closed before the framing said so.
    Truncated,
}

impl Client {
    /// Connects to `addr`.
    pub async fn connect(addr: std::net::SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, writer) = stream.into_split();
        Ok(Client {
            stream: BufReader::new(read),
            writer,
        })
    }

    /// Reads until the server closes the connection (bytes after the response are
    /// discarded), for at most `within`; whether it closed. A client that lets the server
    /// close first after `Connection: close` leaves no TIME_WAIT socket on its own side, so
    /// its ephemeral ports stay free however many connections it opens.
    pub async fn until_closed(&mut self, within: Duration) -> bool {
        let mut buf = [0u8; 4096];
        tokio::time::timeout(within, async {
            while let Ok(n) = self.stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await
        .is_ok()
    }

    /// Writes raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await
    }

    /// Writes `body_len` bytes of body while reading the response, as a client uploading a
    /// large body does: the response may come (and the connection close) before the upload
    /// is done. Write errors after that are expected and ignored.
    pub async fn upload_and_read(
        &mut self,
        body_len: usize,
    ) -> std::io::Result<(Response, BodyEnd)> {
        let Client { stream, writer } = self;
        let write = async move {
            let chunk = vec![b'u'; 64 << 10];
            let mut left = body_len;
            while left > 0 {
                let n = left.min(chunk.len());
                if writer.write_all(&chunk[..n]).await.is_err() {
                    break;
                }
                left -= n;
            }
        };
        let read = read_response(stream, false);
        tokio::pin!(write, read);
        let mut writing = true;
        loop {
            tokio::select! {
                r = &mut read => return r,
                _ = &mut write, if writing => writing = false,
            }
        }
    }

    /// Sends a simple request (headers as given, optional body with Content-Length) and
    /// reads the response.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" || method == "PUT" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        self.send(head.as_bytes()).await?;
        self.send(body).await?;
        let (response, end) = self.read_response(method == "HEAD").await?;
        if end == BodyEnd::Truncated {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "body truncated",
            ));
        }
        Ok(response)
    }

    /// Reads one response (after any 1xx). `head_request`: the request was HEAD.
    pub async fn read_response(
        &mut self,
        head_request: bool,
    ) -> std::io::Result<(Response, BodyEnd)> {
        read_response(&mut self.stream, head_request).await
    }

    /// Reads until EOF (for checking that the connection was closed).
    pub async fn read_to_end(&mut self, within: Duration) -> std::io::Result<Vec<u8>> {
        let mut rest = Vec::new();
        tokio::time::timeout(within, self.stream.read_to_end(&mut rest))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connection stayed open")
            })??;
        Ok(rest)
    }

    /// The two halves, e.g. for an upgraded connection.
    pub fn halves(&mut self) -> (&mut BufReader<OwnedReadHalf>, &mut OwnedWriteHalf) {
        (&mut self.stream, &mut self.writer)
    }
}

async fn read_response(
    stream: &mut BufReader<OwnedReadHalf>,
    head_request: bool,
) -> std::io::Result<(Response, BodyEnd)> {
    let mut informational = Vec::new();
    loop {
        let (status, headers) = read_head(stream).await?;
        if (100..200).contains(&status) && status != 101 {
            informational.push(status);
            continue;
        }
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
            informational,
        };
        let end = read_body(stream, &mut response, head_request).await?;
        return Ok((response, end));
    }
}

async fn read_head(
    stream: &mut BufReader<OwnedReadHalf>,
) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    if stream.read_line(&mut line).await? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed before a response",
        ));
    }
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad status line {line:?}"),
            )
        })?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed mid-header",
            ));
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            return Ok((status, headers));
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
}

async fn read_body(
    stream: &mut BufReader<OwnedReadHalf>,
    r: &mut Response,
    head_request: bool,
) -> std::io::Result<BodyEnd> {
    if head_request || r.status == 204 || r.status == 304 || r.status == 101 {
        return Ok(BodyEnd::Complete);
    }
    let chunked = r
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).await? == 0 {
                return Ok(BodyEnd::Truncated);
            }
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size")
                })?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    line.clear();
                    if stream.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                        return Ok(BodyEnd::Complete);
                    }
                }
            }
            let start = r.body.len();
            r.body.resize(start + size, 0);
            if stream.read_exact(&mut r.body[start..]).await.is_err() {
                return Ok(BodyEnd::Truncated);
            }
            let mut crlf = [0u8; 2];
            if stream.read_exact(&mut crlf).await.is_err() {
                return Ok(BodyEnd::Truncated);
            }
        }
    }
    if let Some(len) = r
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        let mut buf = vec![0u8; 64 << 10];
        while r.body.len() < len {
            let want = (len - r.body.len()).min(buf.len());
            let n = stream.read(&mut buf[..want]).await?;
            if n == 0 {
                return Ok(BodyEnd::Truncated);
            }
            r.body.extend_from_slice(&buf[..n]);
        }
        return Ok(BodyEnd::Complete);
    }
    stream.read_to_end(&mut r.body).await?;
    Ok(BodyEnd::Complete)
}

/// GET `path` on a fresh connection.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<Response> {
    Client::connect(addr)
        .await?
        .request("GET", path, &[], b"")
        .await
}
