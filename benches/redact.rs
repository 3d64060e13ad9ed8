//! Throughput of output redaction (`cargo bench --bench redact`): token secrets and a key over
//! 32 MiB of random base64 (the worst case: every byte continues some pattern) and of text
//! like `ls /var/lib/dpkg/info`, pushed through a `StreamRedactor` in reads of several sizes.
//! Prints figures; asserts only that no secret survives.

use tandem::audit::Redactor;

/// A fixed-seed xorshift64*, so every run measures the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

/// PEM-shaped, not a real key.
const KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\n\
    b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n\
    QyNTUxOQAAACBc3R1ZmZlZC1mYWtlLWtleS1mb3ItdGVzdHMtb25seS0wMDAwMDAwMAAAAJ\n\
    hmYWtlZmFrZWZha2VmYWtlZmFrZWZha2VmYWtlZmFrZWZha2VmYWtlZmFrZWZha2VmYWtl\n\
    AAAE=\n\
    -----END OPENSSH PRIVATE KEY-----\n";

fn main() {
    // `cargo test --all-targets` runs bench targets too, without `--bench`: a throughput
    // figure measured in a debug build says nothing, so only `cargo bench` measures.
    if !std::env::args().any(|a| a == "--bench") {
        println!("redact: run with `cargo bench --bench redact` to measure");
        return;
    }
    let mut rng = Rng(42);
    let b64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let tokens: Vec<String> = (0..50)
        .map(|_| (0..40).map(|_| char::from(*rng.pick(b64))).collect())
        .collect();
    let words = [
        "lib", "python3", "-", "perl", "base", "files", "x86", "64", "gnu", ".",
    ];
    let (mut base64_out, mut text_out) = (Vec::new(), Vec::new());
    while base64_out.len() < 32 << 20 {
        base64_out.extend((0..76).map(|_| *rng.pick(b64)));
        base64_out.push(b'\n');
        text_out.extend_from_slice(b"/var/lib/dpkg/info/");
        for _ in 0..6 {
            text_out.extend_from_slice(rng.pick(&words).as_bytes());
        }
        text_out.extend_from_slice(b".list\n");
        if rng.next() % 1000 == 0 {
            base64_out.extend_from_slice(rng.pick(&tokens).as_bytes());
            text_out.extend_from_slice(rng.pick(&tokens).as_bytes());
        }
    }
    for secrets in [50, 3, 0] {
        let mut r = Redactor::default();
        for t in &tokens[..secrets] {
            r.add(t);
        }
        if secrets > 0 {
            r.add(KEY);
        }
        for (what, input) in [("random base64", &base64_out), ("text", &text_out)] {
            for read in [32 << 10, 4096, 512] {
                let mut best = f64::MAX;
                let mut out = Vec::new();
                for _ in 0..3 {
                    let started = std::time::Instant::now();
                    let mut s = r.stream();
                    out = Vec::with_capacity(input.len());
                    for chunk in input.chunks(read) {
                        out.extend(s.push(chunk));
                    }
                    out.extend(s.finish());
                    best = best.min(started.elapsed().as_secs_f64());
                }
                let text = String::from_utf8_lossy(&out);
                assert!(text
                    .split("[redacted]")
                    .all(|kept| tokens[..secrets].iter().all(|t| !kept.contains(t.as_str()))));
                let mib = input.len() as f64 / f64::from(1 << 20);
                println!(
                    "{secrets:>2} secrets{}, {what:>13} in {read:>5}-byte reads: {:>6.0} MiB/s, {:>5.2} ms per MiB",
                    if secrets > 0 { " + a key" } else { "" },
                    mib / best,
                    best * 1000.0 / mib
                );
            }
        }
    }
}
