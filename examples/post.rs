//! Posts sample CMC webhook requests, byte for byte as CMC makes them, to a
//! URL: event batches and inbound mails, in every encoding.
//!
//! ```text
//! cargo run --example receiver                      # first terminal
//! cargo run --features test-util --example post     # second terminal
//! cargo run --features test-util --example post -- http://127.0.0.1:8080/mails --kind inbound --encoding multipart
//! ```

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use cmc_webhook::test_util::{sample_events, sample_inbound, CmcRequest, WireEncoding};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    Events,
    Inbound,
    All,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Encoding {
    Json,
    Form,
    Multipart,
    All,
}

/// Post sample Customers Mail Cloud webhook requests to a receiver.
#[derive(Debug, Parser)]
struct Args {
    /// Where to post (http only).
    #[arg(default_value = "http://127.0.0.1:8080/mails")]
    url: http::Uri,

    /// Which webhook to send.
    #[arg(long, value_enum, default_value = "all")]
    kind: Kind,

    /// Which encoding to send it in.
    #[arg(long, value_enum, default_value = "all")]
    encoding: Encoding,

    /// Records per event batch.
    #[arg(long, default_value_t = 3)]
    records: usize,

    /// api_key to put in the bodies.
    #[arg(long)]
    api_key: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.url.scheme_str() != Some("http") {
        eprintln!("only http:// URLs are supported (put TLS in front of the receiver, not here)");
        return ExitCode::from(2);
    }
    let host = args
        .url
        .host()
        .unwrap_or("127.0.0.1")
        .trim_matches(['[', ']'])
        .to_owned();
    let port = args.url.port_u16().unwrap_or(80);
    let path = args
        .url
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();

    let encodings = match args.encoding {
        Encoding::Json => vec![WireEncoding::Json],
        Encoding::Form => vec![WireEncoding::Form],
        Encoding::Multipart => vec![WireEncoding::Multipart],
        Encoding::All => WireEncoding::ALL.to_vec(),
    };
    let mut batch = sample_events(args.records);
    batch.api_key = args.api_key.clone().map(Into::into);
    // JSON mode carries no attachments, as with CMC.
    let mut with_file = sample_inbound(true);
    with_file.api_key = batch.api_key.clone();
    let mut requests = Vec::new();
    for &encoding in &encodings {
        if matches!(args.kind, Kind::Events | Kind::All) {
            requests.push((
                format!("{} events, {encoding:?}", args.records),
                CmcRequest::events(&batch, encoding),
            ));
        }
        if matches!(args.kind, Kind::Inbound | Kind::All) {
            requests.push((
                format!("inbound mail, {encoding:?}"),
                CmcRequest::inbound(&with_file, encoding),
            ));
        }
    }

    let mut failed = false;
    for (what, request) in requests {
        let bytes = request
            .uri(path.clone())
            .to_http1(&format!("{host}:{port}"));
        match send(&host, port, &bytes).await {
            Ok(reply) => {
                let status_line = reply.lines().next().unwrap_or("").to_owned();
                let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim();
                println!("{what}: {status_line} {body}");
                failed |= !status_line.contains(" 200 ");
            }
            Err(e) => {
                eprintln!("{what}: {e} (is the receiver running? cargo run --example receiver)");
                return ExitCode::FAILURE;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn send(host: &str, port: u16, request: &[u8]) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect((host, port)).await?;
    stream.write_all(request).await?;
    let mut reply = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut reply),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 30 s"))??;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}
