//! axum extractors: take a [`Webhook`], an [`EventBatch`] or an
//! [`InboundMail`] as a handler argument (feature `axum`, on by default).
//!
//! The extractor reads the body within the limit, parses it in whichever
//! encoding it came, checks the `api_key` the [`WebhookLayer`] asks for, and
//! otherwise rejects with a [`Rejection`]: 400 for a malformed body (with the
//! parse error's text) or a webhook of the other kind (naming what
//! arrived), 401 for a missing or wrong `api_key`, 413 for a body over the
//! limit, 415 for another media type.
//!
//! ```
//! use axum::{routing::post, Router};
//! use cmc_webhook_core::{Event, EventBatch, InboundMail};
//!
//! async fn on_events(batch: EventBatch) -> &'static str {
//!     for event in &batch.events {
//!         if let Event::Bounce(bounce) = event {
//!             println!("bounced: {} ({})", bounce.to, bounce.status.code());
//!         }
//!     }
//!     "ok"
//! }
//!
//! async fn on_mail(mail: InboundMail) -> &'static str {
//!     println!("mail for {}: {}", mail.envelope_to, mail.subject);
//!     "ok"
//! }
//!
//! let app: Router = Router::new()
//!     .route("/cmc/events", post(on_events))
//!     .route("/cmc/inbound", post(on_mail));
//! ```
//!
//! # Optional bodies
//!
//! `Option<EventBatch>` (and `Option<InboundMail>`, `Option<Webhook>`) is
//! `None` for a request without a `Content-Type` header, as axum's
//! `Option<Json<T>>`; any other request is read as above, and refused the
//! same way.
//!
//! ```
//! use cmc_webhook_core::EventBatch;
//!
//! async fn on_events(batch: Option<EventBatch>) -> &'static str {
//!     match batch {
//!         Some(_) => "ok",
//!         None => "send a webhook",
//!     }
//! }
//! # let _: axum::Router = axum::Router::new().route("/", axum::routing::post(on_events));
//! ```
//!
//! # Who is calling
//!
//! [`ClientIp`] extracts the client address: the one the layer checked,
//! or without the layer the connection's peer.
//!
//! # Which account
//!
//! Behind a layer with several [sources](crate::WebhookLayerBuilder::source),
//! [`Sourced<T>`](crate::Sourced) gives the [`Source`](crate::Source) with
//! the webhook: the account it came from, and the zone to read its
//! `created` in. (A source decided from the request's head alone is also
//! in the request's extensions: `Extension<Source>`; one decided by the
//! body's `api_key` is only known once the body is read, so `Sourced` is
//! the way that always works.)
//!
//! # What to answer
//!
//! The handler decides the response. CMC expects 200; answer it once the
//! events are safely stored (or queued), and answer a 5xx when they are not
//! (a database error, a full queue), so that CMC sends the batch again. Use
//! [`Event::idempotency_key`](crate::Event::idempotency_key) to ignore what
//! was already stored. Do slow work after answering.
//!
//! # Without the layer
//!
//! The extractors work on their own, but then nothing checks who is
//! calling: no address allowlist, no BASIC auth, no `api_key` (CMC signs
//! nothing, so anyone who finds the URL can post). The body limit is then
//! axum's: 2 MB unless changed with `axum::extract::DefaultBodyLimit`.
//! With the [`WebhookLayer`], the layer's limit and keys apply instead.
//!
//! [`WebhookLayer`]: crate::WebhookLayer

use std::net::SocketAddr;

use axum_core::RequestExt as _;
use axum_core::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request};
use http::request::Parts;

use crate::client_ip::ClientIp;
use crate::rejection::{Reason, Rejection};
use crate::request::{Policy, Sourced, read_with_policy};
use crate::webhook::Kind;
use crate::{EventBatch, InboundMail, Webhook};

/// The policy for an extraction: the layer's, or axum's body limit and no
/// key check.
fn policy_and_request(request: Request) -> (Policy, Request) {
    match request.extensions().get::<Policy>().cloned() {
        Some(policy) => (policy, request),
        // Limited by DefaultBodyLimit (2 MB unless configured), which our
        // reader recognises and answers with 413.
        None => (
            Policy::default().body_limit(usize::MAX),
            request.with_limited_body(),
        ),
    }
}

async fn extract(request: Request, expected: Option<Kind>) -> Result<Webhook, Rejection> {
    Ok(extract_sourced(request, expected).await?.1)
}

async fn extract_sourced(
    request: Request,
    expected: Option<Kind>,
) -> Result<Sourced<Webhook>, Rejection> {
    let (policy, request) = policy_and_request(request);
    read_with_policy(request, expected, &policy).await
}

impl<S: Send + Sync> FromRequest<S> for Sourced<Webhook> {
    type Rejection = Rejection;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        extract_sourced(request, None).await
    }
}

impl<S: Send + Sync> FromRequest<S> for Sourced<EventBatch> {
    type Rejection = Rejection;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let Sourced(source, webhook) = extract_sourced(request, Some(Kind::Events)).await?;
        Ok(Sourced(source, webhook.into_events()?))
    }
}

impl<S: Send + Sync> FromRequest<S> for Sourced<InboundMail> {
    type Rejection = Rejection;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let Sourced(source, webhook) = extract_sourced(request, Some(Kind::Inbound)).await?;
        Ok(Sourced(source, webhook.into_inbound()?))
    }
}

impl<S: Send + Sync> FromRequest<S> for Webhook {
    type Rejection = Rejection;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        extract(request, None).await
    }
}

impl<S: Send + Sync> FromRequest<S> for EventBatch {
    type Rejection = Rejection;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(extract(request, Some(Kind::Events)).await?.into_events()?)
    }
}

impl<S: Send + Sync> FromRequest<S> for InboundMail {
    type Rejection = Rejection;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(extract(request, Some(Kind::Inbound))
            .await?
            .into_inbound()?)
    }
}

/// `None` without a `Content-Type`, as axum's `Option<Json<T>>`.
fn has_content_type(request: &Request) -> bool {
    request.headers().contains_key(http::header::CONTENT_TYPE)
}

impl<S: Send + Sync> OptionalFromRequest<S> for Webhook {
    type Rejection = Rejection;

    async fn from_request(request: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        if !has_content_type(&request) {
            return Ok(None);
        }
        <Webhook as FromRequest<S>>::from_request(request, state)
            .await
            .map(Some)
    }
}

impl<S: Send + Sync> OptionalFromRequest<S> for EventBatch {
    type Rejection = Rejection;

    async fn from_request(request: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        if !has_content_type(&request) {
            return Ok(None);
        }
        <EventBatch as FromRequest<S>>::from_request(request, state)
            .await
            .map(Some)
    }
}

impl<S: Send + Sync> OptionalFromRequest<S> for InboundMail {
    type Rejection = Rejection;

    async fn from_request(request: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        if !has_content_type(&request) {
            return Ok(None);
        }
        <InboundMail as FromRequest<S>>::from_request(request, state)
            .await
            .map(Some)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(client) = parts.extensions.get::<ClientIp>() {
            return Ok(*client);
        }
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .or_else(|| parts.extensions.get::<SocketAddr>().copied());
        match peer {
            Some(peer) => Ok(ClientIp(crate::allowlist::canonical(peer.ip()))),
            None => {
                tracing::error!(
                    "ClientIp: no client address in the request: put the WebhookLayer in front, \
                     or serve with `into_make_service_with_connect_info::<SocketAddr>()`"
                );
                Err(Rejection::new(Reason::NoPeerAddress))
            }
        }
    }
}
