//! Validation of user-supplied integration specs and query parameters. Each failure has a
//! stable machine-readable code that the API returns in its problem+json body.
