//! (placeholder until the pages land)
pub fn routes() -> axum::Router<super::AppState> { axum::Router::new() }
