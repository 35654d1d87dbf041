use cmc_webhook::test_util::{encode_events, sample_events, WireEncoding};
fn main() {
    let req = encode_events(&sample_events(100), WireEncoding::Json);
    let mut n = 0;
    for _ in 0..2000 {
        let b = cmc_webhook::Webhook::parse(&req.content_type, req.body.clone()).unwrap();
        if let cmc_webhook::Webhook::Events(b) = b { n += b.events.len(); }
    }
    println!("{n}");
}
