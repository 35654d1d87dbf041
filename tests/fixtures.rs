//! Every fixture parses, to the values it holds.

mod common;

use std::net::IpAddr;

use cmc_webhook::{
    default_time_zone, BounceClass, BounceStatus, CreatedAtError, DeliveryStatus, Event,
    EventBatch, EventType, InboundMail, Webhook,
};
use jiff::civil::date;

fn events(name: &str) -> EventBatch {
    let (ct, body) = common::load(name);
    EventBatch::parse(&ct, body).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn inbound(name: &str) -> InboundMail {
    let (ct, body) = common::load(name);
    InboundMail::parse(&ct, body).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

#[test]
fn every_fixture_parses_as_the_kind_its_name_says() {
    let all = common::all_bodies();
    assert!(
        all.len() >= 16,
        "expected all fixtures, found {}",
        all.len()
    );
    for path in all {
        let ct = common::content_type_of(&path);
        let body = std::fs::read(&path).unwrap();
        let parsed =
            Webhook::parse(&ct, body.into()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path.file_name().unwrap().to_str().unwrap();
        match parsed {
            Webhook::Events(_) => assert!(name.starts_with("event-"), "{name}"),
            Webhook::Inbound(_) => assert!(name.starts_with("inbound-"), "{name}"),
        }
    }
}

/// The shared fixtures are copied into this repository so that the crate
/// tests alone; when the project's shared folder is beside the checkout,
/// the copies must still be the same bytes.
#[test]
fn vendored_shared_fixtures_match_the_originals_when_present() {
    let originals = common::fixtures().join("../../../shared/fixtures");
    let Ok(entries) = std::fs::read_dir(&originals) else {
        return; // not beside the project's shared folder: nothing to compare
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let copy = common::fixtures()
            .join("shared")
            .join(path.file_name().unwrap());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&copy).unwrap_or_default(),
            "{} differs from its copy in tests/fixtures/shared",
            path.display()
        );
    }
}

/// The core's test kit embeds five of the shared fixtures from its own
/// package (`crates/core/fixtures`, so that it builds when published):
/// they must stay the same bytes as the copies every other test reads.
#[test]
fn the_core_packages_fixtures_match_the_shared_copies() {
    let core = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/core/fixtures");
    let mut compared = 0;
    for entry in std::fs::read_dir(&core).unwrap() {
        let path = entry.unwrap().path();
        let shared = common::fixtures()
            .join("shared")
            .join(path.file_name().unwrap());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&shared).unwrap_or_default(),
            "{} differs from tests/fixtures/shared: change both",
            path.display()
        );
        compared += 1;
    }
    assert_eq!(
        compared, 5,
        "the core's fixtures are the five the test kit embeds"
    );
}

#[test]
fn queued_delivery() {
    let batch = events("shared/event-v2-json-queued.json");
    assert_eq!(batch.event_type, EventType::Deliveries);
    assert_eq!(batch.server_composition, "pro");
    assert_eq!(batch.api_key, None);
    assert_eq!(batch.events.len(), 1);
    let Event::Delivery(d) = &batch.events[0] else {
        panic!("{:?}", batch.events[0])
    };
    assert_eq!(d.status, DeliveryStatus::Queued);
    assert_eq!(d.created, date(2023, 1, 25).at(14, 3, 6, 0));
    assert_eq!(d.return_path, "info@return.pro.smtps.jp");
    assert_eq!(d.from, "info@example.com");
    assert_eq!(d.to, "user@example.jp");
    assert_eq!(
        d.message_id,
        "<031a32d4-06cd-b1ae-9526-011c0b9f1296@example.com>"
    );
    assert_eq!(d.reason, "");
    assert_eq!(d.subject, "メールマガジンのテスト");
    assert_eq!(d.api_data, "");
    assert_eq!(d.source_ip, ip("100.100.100.1"));
    assert_eq!(d.sender_ip, None);
    assert!(d.extra.is_empty());
    let at = batch.events[0].created_at(&default_time_zone()).unwrap();
    assert_eq!(at.to_string(), "2023-01-25T05:03:06Z");
}

#[test]
fn succeeded_delivery() {
    let batch = events("shared/event-v2-json-succeeded.json");
    let Event::Delivery(d) = &batch.events[0] else {
        panic!()
    };
    assert_eq!(d.status, DeliveryStatus::Succeeded);
    assert_eq!(d.created, date(2023, 1, 25).at(14, 3, 9, 0));
    assert_eq!(d.source_ip, None);
    assert_eq!(d.sender_ip, ip("100.100.100.3"));
    assert_eq!(
        d.message_id,
        "<031a32d4-06cd-b1ae-9526-011c0b9f1296@example.com>"
    );
}

#[test]
fn failed_delivery_keeps_the_long_smtp_reason() {
    let batch = events("shared/event-v2-json-failed.json");
    let Event::Delivery(d) = &batch.events[0] else {
        panic!()
    };
    assert_eq!(d.status, DeliveryStatus::Failed);
    assert_eq!(d.to, "no-user@example.jp");
    assert!(d
        .reason
        .starts_with("550 5.1.1 The email account that you tried to reach does not exist."));
    assert!(d
        .reason
        .contains("<https://support.google.com/mail/?p=NoSuchUser>"));
    assert!(d.reason.ends_with("- gsmtp (in reply to RCPT TO)"));
    assert_eq!(d.created, date(2023, 1, 25).at(14, 6, 6, 0));
}

#[test]
fn bounce_host_unknown() {
    let batch = events("shared/event-v2-json-bounce-host-unknown.json");
    assert_eq!(batch.event_type, EventType::Bounces);
    let Event::Bounce(b) = &batch.events[0] else {
        panic!()
    };
    assert_eq!(b.status, BounceStatus::UnknownHost);
    assert_eq!(b.status.code(), "1");
    assert_eq!(b.to, "user@example");
    assert_eq!(b.reason, "host unknown");
    assert_eq!(
        b.message_id,
        "<8f902ee7-ae65-8711-48a8-2f708cb14205@example.com>"
    );
    assert_eq!(b.created, date(2023, 1, 25).at(14, 5, 15, 0));
}

#[test]
fn bounce_unknown_user() {
    let batch = events("shared/event-v2-json-bounce-unknown-user.json");
    let Event::Bounce(b) = &batch.events[0] else {
        panic!()
    };
    assert_eq!(b.status, BounceStatus::UnknownUser);
    assert_eq!(b.status.code(), "2");
    assert_eq!(b.to, "no-user@example.jp");
    assert_eq!(b.from, "info@example.com");
    assert_eq!(b.return_path, "info@return.pro.smtps.jp");
    assert!(b.reason.starts_with("550 5.1.1"));
}

#[test]
fn failed_delivery_and_its_bounce_share_the_message_id_but_not_the_key() {
    let failed = events("shared/event-v2-json-failed.json");
    let bounce = events("shared/event-v2-json-bounce-unknown-user.json");
    assert_eq!(failed.events[0].message_id(), bounce.events[0].message_id());
    assert_ne!(
        failed.events[0].idempotency_key(),
        bounce.events[0].idempotency_key()
    );
}

#[test]
fn form_body_with_two_records_and_escaped_angle_brackets() {
    let batch = events("shared/event-v2-form-two-records.form");
    assert_eq!(batch.server_composition, "sandbox");
    assert_eq!(batch.events.len(), 2);
    let (Event::Delivery(a), Event::Delivery(b)) = (&batch.events[0], &batch.events[1]) else {
        panic!()
    };
    assert_eq!(a.status, DeliveryStatus::Queued);
    assert_eq!(b.status, DeliveryStatus::Failed);
    assert_eq!(
        a.message_id,
        "<1e928240-492e-af27-fcac-da2513ec7bc8@example.com>"
    );
    assert_eq!(a.created, date(2023, 4, 27).at(13, 23, 58, 0));
    assert_eq!(a.source_ip, ip("100.100.100.1"));
    assert_eq!(a.return_path, "info@return.sandbox.smtps.jp");
    assert_eq!(a.subject, "メールマガジンのテスト");
    assert_eq!(
        b.reason,
        "Recipient address <user@example.jp> is suppressed to send mail. (in reply to RCPT TO)"
    );
    assert_ne!(
        batch.events[0].idempotency_key(),
        batch.events[1].idempotency_key()
    );
}

#[test]
fn version_1_form_body_fills_the_same_struct() {
    let batch = events("event-v1-form-deferred.form");
    let Event::Delivery(d) = &batch.events[0] else {
        panic!()
    };
    assert_eq!(d.status, DeliveryStatus::Deferred);
    assert_eq!(d.return_path, "info@return.smtps.jp");
    assert_eq!(d.to, "user@example.jp");
    assert_eq!(d.from, "");
    assert_eq!(d.api_data, "");
    assert_eq!(d.message_id, "<v1-0001@example.com>");
    assert_eq!(d.reason, "451 4.7.1 Greylisted, please try again later");
    assert_eq!(d.sender_ip, ip("203.0.113.25"));
    assert_eq!(d.subject, "v1 件名");
    assert!(d.extra.is_empty(), "{:?}", d.extra);
}

#[test]
fn multipart_event_webhook_with_api_key_and_odd_case_content_type() {
    let (ct, _) = common::load("event-v2-multipart-bounces.multipart");
    assert!(ct.starts_with("Multipart/Form-Data"));
    let batch = events("event-v2-multipart-bounces.multipart");
    assert_eq!(batch.event_type, EventType::Bounces);
    assert_eq!(batch.api_key.as_deref(), Some("k3y-For-Tests"));
    assert!(!format!("{batch:?}").contains("k3y-For-Tests"));
    assert!(!serde_json::to_string(&batch)
        .unwrap()
        .contains("k3y-For-Tests"));
    let statuses: Vec<_> = batch
        .events
        .iter()
        .map(|e| match e {
            Event::Bounce(b) => (
                b.status.clone(),
                b.message_id.to_string(),
                b.api_data.to_string(),
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        statuses,
        [
            (
                BounceStatus::MailboxFull,
                "<mp-1@example.com>".to_owned(),
                "campaign-7".to_owned()
            ),
            (
                BounceStatus::Unsubscribed,
                "<mp-2@example.com>".to_owned(),
                String::new()
            ),
        ]
    );
}

#[test]
fn blocks_are_kept_raw_with_their_known_fields() {
    let batch = events("event-v2-json-blocks.json");
    assert_eq!(batch.event_type, EventType::Blocks);
    let (Event::Block(a), Event::Block(b)) = (&batch.events[0], &batch.events[1]) else {
        panic!()
    };
    assert_eq!(a.email.as_deref(), Some("stop@example.jp"));
    assert_eq!(a.id.as_deref(), Some("1234"));
    assert_eq!(a.created.as_deref(), Some("2023-03-01 12:00:00"));
    assert_eq!(a.occurred.as_deref(), Some("2023-03-01 11:59:58"));
    assert_eq!(a.status.as_deref(), Some("add"));
    assert_eq!(b.email.as_deref(), Some("again@example.jp"));
    assert_eq!(b.id, None);
    let raw: serde_json::Value = serde_json::from_str(b.raw.get()).unwrap();
    assert_eq!(raw["note"]["by"], "console");
    assert_ne!(
        batch.events[0].idempotency_key(),
        batch.events[1].idempotency_key()
    );
}

#[test]
fn unknown_event_type_is_kept_whole() {
    let batch = events("event-v2-json-unknown-type.json");
    assert_eq!(batch.event_type, EventType::Other("unsubscribes".into()));
    assert_eq!(batch.event_type.as_str(), "unsubscribes");
    let Event::Unknown(u) = &batch.events[0] else {
        panic!()
    };
    assert_eq!(u.event_type, "unsubscribes");
    let raw: serde_json::Value = serde_json::from_str(u.raw.get()).unwrap();
    assert_eq!(raw["via"], "one-click");
    assert_eq!(raw["to"], "x@example.jp");
    assert_eq!(
        batch.events[0].event_type(),
        EventType::Other("unsubscribes".into())
    );
    assert_eq!(batch.events[0].event_type().as_str(), "unsubscribes");
}

#[test]
fn unknown_status_extra_fields_ipv6_and_api_key_are_kept() {
    let batch = events("event-v2-json-unknown-status-api-key.json");
    assert_eq!(batch.api_key.as_deref(), Some("s3cret-api-key"));
    assert!(!format!("{batch:?}").contains("s3cret-api-key"));
    assert_eq!(batch.extra["future_flag"].get(), "true");
    let Event::Delivery(d) = &batch.events[0] else {
        panic!()
    };
    assert_eq!(d.status, DeliveryStatus::Other("expired".into()));
    assert_eq!(d.status.as_str(), "expired");
    assert_eq!(d.sender_ip, ip("2001:db8::25"));
    assert_eq!(d.extra["trackingId"].parse::<String>().unwrap(), "t-1");
}

#[test]
fn unknown_bounce_code_and_absent_optional_fields() {
    let batch = events("event-v2-json-bounce-unknown-code-minimal.json");
    let Event::Bounce(b) = &batch.events[0] else {
        panic!()
    };
    assert_eq!(b.status, BounceStatus::Other("42".into()));
    assert_eq!(b.status.code(), "42");
    assert_eq!(
        (
            b.from.as_str(),
            b.return_path.as_str(),
            b.reason.as_str(),
            b.subject.as_str()
        ),
        ("", "", "", "")
    );
    assert_eq!(b.api_data, "");
}

#[test]
fn normalised_accessors_on_every_kind_of_record() {
    let queued = events("shared/event-v2-json-queued.json");
    let e = &queued.events[0];
    assert_eq!(e.event_type(), EventType::Deliveries);
    assert_eq!(e.recipient(), Some("user@example.jp"));
    assert_eq!(e.reason(), None); // "" for queued
    assert_eq!(e.api_data(), None); // ""
    assert_eq!(e.bounce_class(), None);

    let failed = events("shared/event-v2-json-failed.json");
    let e = &failed.events[0];
    assert_eq!(e.recipient(), Some("no-user@example.jp"));
    assert!(e.reason().unwrap().starts_with("550 5.1.1 "));

    let v1 = events("event-v1-form-deferred.form");
    let e = &v1.events[0];
    assert_eq!(e.recipient(), Some("user@example.jp")); // envelopeTo
    assert_eq!(
        e.reason(),
        Some("451 4.7.1 Greylisted, please try again later")
    );
    assert_eq!(e.api_data(), None); // absent in version 1

    let host = events("shared/event-v2-json-bounce-host-unknown.json");
    let e = &host.events[0];
    assert_eq!(e.event_type(), EventType::Bounces);
    assert_eq!(e.recipient(), Some("user@example"));
    assert_eq!(e.reason(), Some("host unknown"));
    assert_eq!(e.api_data(), None);
    assert_eq!(e.bounce_class(), Some(BounceClass::Hard));
    assert_eq!(
        e.created_at(&default_time_zone()).unwrap().to_string(),
        "2023-01-25T05:05:15Z"
    );

    let multipart = events("event-v2-multipart-bounces.multipart");
    let [full, unsubscribed] = &multipart.events[..] else {
        panic!()
    };
    assert_eq!(full.api_data(), Some("campaign-7"));
    assert_eq!(full.bounce_class(), Some(BounceClass::Soft)); // 5, mailbox full
    assert_eq!(unsubscribed.api_data(), None);
    assert_eq!(unsubscribed.bounce_class(), Some(BounceClass::Unsubscribed));

    let minimal = events("event-v2-json-bounce-unknown-code-minimal.json");
    let e = &minimal.events[0];
    assert_eq!(e.recipient(), Some("user@example.jp"));
    assert_eq!(e.reason(), None); // absent
    assert_eq!(e.api_data(), None); // absent
    assert_eq!(e.bounce_class(), Some(BounceClass::Unknown)); // 42

    let blocks = events("event-v2-json-blocks.json");
    for (e, email) in blocks
        .events
        .iter()
        .zip(["stop@example.jp", "again@example.jp"])
    {
        assert_eq!(e.event_type(), EventType::Blocks);
        assert_eq!(e.recipient(), Some(email));
        assert_eq!(e.reason(), None);
        assert_eq!(e.api_data(), None);
        assert_eq!(e.bounce_class(), None);
        // `created` of a block stays text.
        assert!(matches!(
            e.created_at(&default_time_zone()),
            Err(CreatedAtError::Unavailable)
        ));
    }

    let unknown = events("event-v2-json-unknown-type.json");
    let e = &unknown.events[0];
    assert_eq!(e.event_type(), unknown.event_type);
    assert_eq!(e.recipient(), None); // its `to` is not read
    assert_eq!(e.reason(), None);
    assert_eq!(e.api_data(), None);
    assert_eq!(e.bounce_class(), None);
    assert!(matches!(
        e.created_at(&default_time_zone()),
        Err(CreatedAtError::Unavailable)
    ));
}

#[test]
fn inbound_json_mail() {
    let mail = inbound("shared/inbound-json.json");
    assert_eq!(mail.server_composition, "sandbox");
    assert_eq!(mail.filter, "info@example.jp");
    assert_eq!(mail.subject, "テストメール");
    assert_eq!(mail.envelope_from, "sender@example.com");
    assert_eq!(mail.envelope_to, "info@example.jp");
    assert_eq!(
        mail.text.as_deref(),
        Some("これはテストのメールです。\r\n\r\n--\r\n")
    );
    assert_eq!(
        mail.html.as_deref(),
        Some("<div dir=\"ltr\">これはテストのメールです。<div>--</div></div>")
    );
    assert!(mail.attachments.is_empty());
    assert_eq!(mail.headers.len(), 10);
    assert_eq!(
        mail.headers.get("return-path"),
        Some("<sender@example.com>")
    );
    let received: Vec<_> = mail.headers.get_all("Received").collect();
    assert_eq!(received.len(), 2);
    assert!(received[0].starts_with("from mail.example.com"));
    assert!(received[1].starts_with("by mail.example.com"));
    let subject = mail.headers.iter().find(|h| h.name == "Subject").unwrap();
    assert_eq!(subject.value, "=?UTF-8?B?44OG44K544OI44Oh44O844Or?=");
    assert_eq!(subject.decoded_value(), "テストメール");
    assert_eq!(
        mail.headers.get("From"),
        Some("送信者 <sender@example.com>")
    );
    let names: Vec<_> = mail.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names[..3], ["Return-Path", "Received", "Received"]);
}

#[test]
fn inbound_multipart_with_a_png_attachment() {
    let mail = inbound("shared/inbound-multipart-attachment.multipart");
    assert_eq!(mail.filter, "attach@example.jp");
    assert_eq!(mail.subject, "添付ファイルテスト");
    assert_eq!(mail.text.as_deref(), Some("画像を添付します。\r\n"));
    assert_eq!(mail.html.as_deref(), Some("<div>画像を添付します。</div>"));
    assert_eq!(
        mail.headers.get("Return-Path"),
        Some("<sender@example.com>")
    );
    assert_eq!(
        mail.headers.get("message-id"),
        Some("<CAF=abc123@mail.example.com>")
    );
    assert_eq!(mail.attachments.len(), 1);
    let png = &mail.attachments[0];
    assert_eq!(png.field_name, "attachment1");
    assert_eq!(png.filename, "画像1.png");
    assert_eq!(png.raw_filename, "画像1.png");
    assert_eq!(png.content_type, "image/png");
    assert_eq!(png.safe_filename(), "画像1.png");
    assert!(png.data.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(png.data.ends_with(b"IEND\xaeB`\x82"));
    // The exact bytes between the part's header and the next boundary.
    let (_, body) = common::load("shared/inbound-multipart-attachment.multipart");
    let start = body
        .windows(8)
        .position(|w| w == b"\x89PNG\r\n\x1a\n")
        .unwrap();
    let end = body.windows(4).rposition(|w| w == b"\r\n--").unwrap();
    assert_eq!(png.data, body.slice(start..end));
}

#[test]
fn inbound_multipart_file_name_encodings_order_and_charsets() {
    let mail = inbound("inbound-multipart-filenames.multipart");
    assert_eq!(mail.text.as_deref(), Some("本文です。\r\n"));
    let subject = mail
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("subject"))
        .unwrap();
    assert_eq!(subject.decoded_value(), "テスト");
    let got: Vec<_> = mail
        .attachments
        .iter()
        .map(|a| {
            (
                a.field_name.as_str(),
                a.filename.as_str(),
                a.raw_filename.as_str(),
                a.content_type.as_str(),
                a.data.len(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "attachment1",
                "請求書.txt",
                "請求書.txt",
                "text/plain; charset=UTF-8",
                "一番目\r\n".len()
            ),
            (
                "attachment2",
                "売上.csv",
                "UTF-8''%E5%A3%B2%E4%B8%8A.csv",
                "text/csv",
                10
            ),
            (
                "attachment3",
                "見積書.pdf",
                "=?UTF-8?B?6KaL56mN5pu4LnBkZg==?=",
                "application/pdf",
                14
            ),
            (
                "attachment4",
                "café menu.txt",
                "=?utf-8?Q?caf=C3=A9_menu.txt?=",
                "application/octet-stream",
                4
            ),
        ]
    );
    assert_eq!(&mail.attachments[3].data[..], b"\x00\x01\x02\xff");
}

#[test]
fn inbound_json_without_optional_fields() {
    let mail = inbound("inbound-json-minimal.json");
    assert_eq!(mail.subject, "");
    assert_eq!(mail.text, None);
    assert_eq!(mail.html, None);
    assert!(mail.attachments.is_empty());
    assert_eq!(mail.headers.get("from"), Some("a@example.com"));
    assert!(mail.extra.is_empty());
}

#[test]
fn content_type_with_parameters_and_odd_case() {
    let (_, body) = common::load("shared/event-v2-json-queued.json");
    for ct in [
        "Application/JSON; charset=UTF-8",
        "application/json;charset=utf-8",
        "APPLICATION/JSON",
    ] {
        let batch = EventBatch::parse(ct, body.clone()).unwrap();
        assert_eq!(batch.events.len(), 1, "{ct}");
    }
    let (_, form) = common::load("shared/event-v2-form-two-records.form");
    let batch =
        EventBatch::parse("Application/X-WWW-Form-Urlencoded; Charset=UTF-8", form).unwrap();
    assert_eq!(batch.events.len(), 2);
}

#[test]
fn text_fields_share_the_body_when_unescaped() {
    let (ct, body) = common::load("shared/event-v2-json-queued.json");
    let range = body.as_ptr_range();
    let batch = EventBatch::parse(&ct, body.clone()).unwrap();
    let Event::Delivery(d) = &batch.events[0] else {
        panic!()
    };
    assert!(
        range.contains(&d.to.as_ptr()),
        "`to` should point into the body"
    );
    assert!(
        range.contains(&d.subject.as_ptr()),
        "`subject` should point into the body"
    );
}
