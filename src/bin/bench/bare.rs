//! `tidegate-bench-bare`: the HTTP ceiling `tidegate-bench round` measures tidegate against.
//!
//! A plain actix-web 4 server (its own `HttpServer`, default workers and settings) with
//! the two routes the publish scenarios call: `POST /v1/topics` answers 201, and
//! `POST /v1/topics/{topic}/records` parses the body with `web::Json` into records whose
//! values are `serde_json::Value`s and answers one offset per record, consecutive in
//! partition 0, as JSON. No storage, auth, metrics or logging: what a JSON endpoint costs
//! on this machine, so the publish rows of the round read as fractions of it.
//!
//! It takes the arguments the bench passes every server (`serve --listen ADDR …`),
//! ignores all but `--listen`, and prints the line the bench waits for.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{App, HttpResponse, HttpServer, web};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Publish {
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(default)]
    #[allow(dead_code, reason = "parsed like a real endpoint would, never read")]
    key: Option<String>,
    #[allow(dead_code, reason = "parsed like a real endpoint would, never read")]
    value: serde_json::Value,
}

#[derive(Serialize)]
struct Published {
    offsets: Vec<Position>,
}

#[derive(Serialize)]
struct Position {
    partition: u32,
    offset: u64,
}

async fn create_topic() -> HttpResponse {
    HttpResponse::Created().json(serde_json::json!({}))
}

async fn publish(next: web::Data<AtomicU64>, body: web::Json<Publish>) -> HttpResponse {
    let count = body.records.len() as u64;
    let first = next.fetch_add(count, Ordering::Relaxed);
    HttpResponse::Ok().json(Published {
        offsets: (first..first + count)
            .map(|offset| Position {
                partition: 0,
                offset,
            })
            .collect(),
    })
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let listen = args
        .windows(2)
        .find(|pair| pair[0] == "--listen")
        .map_or("127.0.0.1:0", |pair| pair[1].as_str())
        .to_owned();
    actix_web::rt::System::new().block_on(async move {
        let next = web::Data::new(AtomicU64::new(0));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(next.clone())
                .app_data(web::JsonConfig::default().limit(8 << 20))
                .route("/v1/topics", web::post().to(create_topic))
                .route("/v1/topics/{topic}/records", web::post().to(publish))
        })
        .bind(&listen)?;
        for addr in server.addrs() {
            // The line `tidegate-bench` waits for from every server it starts.
            println!("tidegate listening on http://{addr}");
        }
        server.run().await
    })
}
