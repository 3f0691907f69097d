//! Parsed GraphQL documents, kept by query text.
//!
//! Clients send the same few operations again and again (the CLI's typed operations, the
//! playground, scripts), so the HTTP endpoint hands async-graphql an already parsed document
//! when it has seen the text before. Only parsing is skipped: validation and the depth and
//! complexity limits still run on every request.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use async_graphql::Request;
use async_graphql::parser::types::ExecutableDocument;
use lru::LruCache;

/// Longest query text that is cached (longer ones are parsed every time).
const MAX_CACHED_QUERY: usize = 16 * 1024;

/// The most recently used parsed documents.
pub struct DocumentCache {
    documents: Mutex<LruCache<String, ExecutableDocument>>,
}

impl DocumentCache {
    /// A cache of the `capacity` most recently used documents.
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            documents: Mutex::new(LruCache::new(capacity)),
        }
    }

    fn documents(&self) -> std::sync::MutexGuard<'_, LruCache<String, ExecutableDocument>> {
        // Every operation on the map is a single get or put: a panic elsewhere cannot leave
        // it half-updated, so a poisoned lock is safe to keep using.
        self.documents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Gives `request` its parsed document: the cached one, or a fresh parse that is cached
    /// for next time. A text that does not parse is left alone (execution reports the error).
    pub fn attach(&self, request: &mut Request) {
        if let Some(document) = self.documents().get(&request.query) {
            request.set_parsed_query(document.clone());
            return;
        }
        if request.query.len() > MAX_CACHED_QUERY {
            return;
        }
        if let Ok(document) = request.parsed_query() {
            let document = document.clone();
            self.documents().put(request.query.clone(), document);
        }
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};

    use super::*;

    struct Query;

    #[Object]
    impl Query {
        async fn one(&self) -> i32 {
            1
        }

        async fn two(&self) -> i32 {
            2
        }
    }

    #[tokio::test]
    async fn repeated_texts_reuse_one_document_and_are_still_validated_every_time() {
        let schema = Schema::build(Query, EmptyMutation, EmptySubscription)
            .limit_complexity(1)
            .finish();
        let cache = DocumentCache::new(NonZeroUsize::new(2).unwrap());
        let run = |text: &str| {
            let mut request = Request::new(text);
            cache.attach(&mut request);
            schema.execute(request)
        };
        for _ in 0..3 {
            let answer = run("{ one }").await;
            assert!(answer.errors.is_empty(), "{:?}", answer.errors);
            assert_eq!(answer.data.to_string(), "{one: 1}");
        }
        assert_eq!(cache.documents().len(), 1, "one document for one text");
        for _ in 0..2 {
            let answer = run("{ one two }").await;
            assert!(
                answer.errors[0].message.contains("too complex"),
                "{:?}",
                answer.errors
            );
        }
        assert_eq!(cache.documents().len(), 2);
        let broken = run("{ one").await;
        assert!(!broken.errors.is_empty(), "the parse error is reported");
        assert!(
            !cache.documents().contains("{ one"),
            "a text that does not parse is not cached"
        );
        run("{ two }").await;
        assert!(
            !cache.documents().contains("{ one }") && cache.documents().contains("{ one two }"),
            "the least recently used text goes first"
        );
    }
}
