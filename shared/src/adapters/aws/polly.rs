//! The voices calls can be read in: Polly's `DescribeVoices`, asked once per process (the first
//! call placed, not at cold start) and kept: Polly's voices change a few times a year.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_polly::{
    types::{Engine, Gender as PollyGender},
    Client,
};
use tokio::sync::OnceCell;

use crate::{
    domain::voice::{Gender, Voice},
    ports::{DispatchError, VoiceCatalog},
};

/// Pages of `DescribeVoices` read at most (Polly answers its ~100 voices in one).
const MAX_PAGES: usize = 10;

pub struct PollyVoices {
    client: Client,
    /// Only the voices whose id (any case) the call placer can use, when it says so.
    usable: Option<Vec<String>>,
    cache: OnceCell<Arc<Vec<Voice>>>,
}

impl PollyVoices {
    pub fn new(client: Client) -> Self {
        PollyVoices { client, usable: None, cache: OnceCell::new() }
    }

    /// Keep only voices with these ids (SMS Voice v2 reads in a subset of Polly's voices).
    pub fn usable(mut self, ids: &[&str]) -> Self {
        self.usable = Some(ids.iter().map(|id| id.to_ascii_uppercase()).collect());
        self
    }

    async fn describe(&self) -> Result<Arc<Vec<Voice>>, DispatchError> {
        let mut voices = Vec::new();
        let mut token = None;
        for _ in 0..MAX_PAGES {
            let out = self.client.describe_voices().set_next_token(token).send().await.map_err(|e| {
                tracing::warn!(error = %aws_sdk_polly::error::DisplayErrorContext(&e), "Polly DescribeVoices failed");
                DispatchError::Unavailable
            })?;
            voices.extend(out.voices().iter().filter_map(|v| {
                let id = v.id()?.as_str().to_owned();
                let gender = match v.gender()? {
                    PollyGender::Female => Gender::Female,
                    PollyGender::Male => Gender::Male,
                    _ => return None,
                };
                let language = v.language_code()?.as_str().to_owned();
                let usable = self.usable.as_ref().is_none_or(|ids| ids.contains(&id.to_ascii_uppercase()));
                usable.then(|| Voice { id, language, gender, neural: v.supported_engines().contains(&Engine::Neural) })
            }));
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        tracing::info!(voices = voices.len(), "Polly voices loaded");
        Ok(Arc::new(voices))
    }
}

#[async_trait]
impl VoiceCatalog for PollyVoices {
    async fn voices(&self) -> Result<Arc<Vec<Voice>>, DispatchError> {
        // A failure is not kept: the next call asks again.
        self.cache.get_or_try_init(|| self.describe()).await.cloned()
    }
}
