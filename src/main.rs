//! The `catalogd` binary: parses the command line and hands over to [`catalogd::cli`].

// mimalloc rather than glibc's malloc: start-up allocates a few KiB per integration from the
// runtime's threads, and glibc grew its per-thread arenas a page range at a time (`mprotect`
// and page faults were a fifth of start-up's CPU at 100k, bench F3). F4's CPU per check did
// not move beyond the machine's noise; RSS is the same within 2% at 100k.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    catalogd::cli::main()
}
