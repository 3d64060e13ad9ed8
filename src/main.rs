use std::process::ExitCode;

// jemalloc, configured in .cargo/config.toml, for C code (libssh2, SQLite) too: with one
// thread per running host, glibc's per-thread arenas fragment, and a 200-host rollout's
// peak RSS came out 25-40 % higher than with two jemalloc arenas and no thread caches.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let code = tandem::cli::main();
    ExitCode::from(code)
}
