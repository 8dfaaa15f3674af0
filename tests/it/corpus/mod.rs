//! Corpora that show a promise over many generated requests rather than a few examples:
//! malformed input over REST and NATS, and clients hanging up mid-write (`malformed`); the
//! tenant × operation × scope matrix on both transports (`matrix`); per-tenant rate limits
//! (`rate_limit`). Each prints its counts.

mod malformed;
mod matrix;
mod rate_limit;
