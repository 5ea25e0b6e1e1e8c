//! The future every database adapter returns ([`super::Sink`], the
//! checkpoint and state tables): boxed, so an adapter is a trait object and
//! the stages above drive any backend without knowing which — one allocation
//! per call, nothing next to a database round trip.

use std::future::Future;
use std::pin::Pin;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
