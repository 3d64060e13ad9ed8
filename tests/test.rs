// Tests panic by design: `unwrap` and `expect` are how a test says "this cannot fail here".
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;
mod validate;
