//! The process's allocator, chosen once per process by what it runs.
//!
//! The control plane (`skiff server`, `skiff up`, …) allocates and frees
//! many small JSON values per request under many threads: it runs on
//! mimalloc, where glibc's malloc spends its time consolidating and
//! fragments memory (cluster benchmark: 2.0 instead of 2.8 GB, and more
//! pods running, at the same point of the run). A node's agent allocates
//! little and lives as long as the node: glibc's malloc keeps some 1.5 MB
//! less of it resident than mimalloc's pages per thread (pods benchmark,
//! the agent with 100 pods), and so it does for `skiff shim`. An agent
//! simulating nodes (`--simulate`, up to thousands of them) allocates like
//! the server and stays on mimalloc: on glibc the cluster benchmark's
//! simulator took 10 CPU seconds instead of 7.
//!
//! The choice is made by a constructor, before the program's first
//! allocation, from the command line glibc hands to constructors. It never
//! changes afterwards, so every block goes back to the allocator that made
//! it; should anything allocate before the constructor runs, the process
//! stays on mimalloc.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::{c_char, c_int, CStr};
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

#[global_allocator]
static ALLOCATOR: ByRole = ByRole;

const UNDECIDED: u8 = 0;
const MIMALLOC: u8 = 1;
const SYSTEM: u8 = 2;
static CHOICE: AtomicU8 = AtomicU8::new(UNDECIDED);

/// Subcommands whose process runs on glibc's malloc.
const ON_SYSTEM_MALLOC: &[&[u8]] = &[b"agent", b"shim"];

/// Whether the process `args` (without the program name) starts runs on
/// glibc's malloc: its subcommand is the first argument that is neither a
/// flag nor the value of the one global flag that takes a value, and a
/// simulating agent is not a node's agent.
fn on_system_malloc<'a>(args: impl IntoIterator<Item = &'a [u8]>) -> bool {
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == b"--log-format" {
            args.next();
        } else if !arg.starts_with(b"-") {
            return ON_SYSTEM_MALLOC.contains(&arg) && !args.any(|a| a == b"--simulate");
        }
    }
    false
}

struct ByRole;

impl ByRole {
    #[inline]
    fn system(&self) -> bool {
        match CHOICE.load(Relaxed) {
            SYSTEM => true,
            MIMALLOC => false,
            // An allocation before the constructor: mimalloc for good.
            _ => CHOICE.compare_exchange(UNDECIDED, MIMALLOC, Relaxed, Relaxed) == Err(SYSTEM),
        }
    }
}

// SAFETY: every call goes to one of two sound allocators, and always the
// same one within a process (CHOICE is set once, before the first block).
// Out of line: inlined at every allocation site, the choice made the
// binary's code 3 MB (8%) larger.
unsafe impl GlobalAlloc for ByRole {
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.system() {
            System.alloc(layout)
        } else {
            mimalloc::MiMalloc.alloc(layout)
        }
    }

    #[inline(never)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if self.system() {
            System.alloc_zeroed(layout)
        } else {
            mimalloc::MiMalloc.alloc_zeroed(layout)
        }
    }

    #[inline(never)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.system() {
            System.dealloc(ptr, layout)
        } else {
            mimalloc::MiMalloc.dealloc(ptr, layout)
        }
    }

    #[inline(never)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if self.system() {
            System.realloc(ptr, layout, new_size)
        } else {
            mimalloc::MiMalloc.realloc(ptr, layout, new_size)
        }
    }
}

/// Chooses the allocator, then sets mimalloc's options (v3's numbering, the
/// version the crate builds) before its first arena is made, unless the
/// environment sets them (`MIMALLOC_ARENA_EAGER_COMMIT`,
/// `MIMALLOC_PURGE_DELAY`, as mimalloc reads):
/// - `mi_option_purge_delay` 0: freed memory goes back to the OS at once.
///   The default (10 ms, and ten times that for arenas) keeps 1–2 MB more
///   resident with 10,000 pods stored and about 10 MB with 30,000, for
///   about 8% more pod creates/s in the api benchmark (its madvise calls
///   are ~7% of the server's CPU under load).
/// - `mi_option_arena_eager_commit` 0: arenas are committed as they are
///   used, not up front; eager commit left 20 MB of an idle server resident
///   for nothing.
extern "C" fn choose(argc: c_int, argv: *const *const c_char, _env: *const *const c_char) {
    const MI_OPTION_ARENA_EAGER_COMMIT: c_int = 4;
    const MI_OPTION_PURGE_DELAY: c_int = 15;
    extern "C" {
        fn mi_option_set(option: c_int, value: std::ffi::c_long);
        fn getenv(name: *const c_char) -> *const c_char;
    }
    let count = usize::try_from(argc).unwrap_or(0);
    let args = (1..count).filter_map(|i| {
        // SAFETY: glibc calls constructors with main's argc and argv:
        // argc pointers to NUL-terminated strings (argv is null elsewhere).
        unsafe {
            let arg = *argv.add(i);
            (!arg.is_null()).then(|| CStr::from_ptr(arg).to_bytes())
        }
    });
    let choice = if !argv.is_null() && on_system_malloc(args) {
        SYSTEM
    } else {
        MIMALLOC
    };
    let _ = CHOICE.compare_exchange(UNDECIDED, choice, Relaxed, Relaxed);
    for (option, env) in [
        (MI_OPTION_ARENA_EAGER_COMMIT, c"MIMALLOC_ARENA_EAGER_COMMIT"),
        (MI_OPTION_PURGE_DELAY, c"MIMALLOC_PURGE_DELAY"),
    ] {
        // SAFETY: getenv reads the environment libc set up before any
        // constructor runs; mi_option_set sets a plain integer option
        // mimalloc reads when it needs it.
        unsafe {
            if getenv(env.as_ptr()).is_null() {
                mi_option_set(option, 0);
            }
        }
    }
}

/// Runs `choose` as a constructor, before the Rust runtime's first
/// allocation (deciding in `main` is too late).
#[used]
#[link_section = ".init_array"]
static CHOOSE: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = choose;

#[cfg(test)]
mod tests {
    use super::*;

    fn on_system(line: &str) -> bool {
        on_system_malloc(line.split_whitespace().map(str::as_bytes))
    }

    #[test]
    fn the_agent_and_the_shim_run_on_glibc_malloc() {
        assert!(on_system("agent --kubeconfig k"));
        assert!(on_system("--log-format json agent"));
        assert!(on_system("--log-format=json agent --node-name n"));
        assert!(on_system("shim --id x"));
    }

    #[test]
    fn the_control_plane_and_simulated_nodes_run_on_mimalloc() {
        assert!(!on_system("server --node-name agent"));
        assert!(!on_system("up"));
        assert!(!on_system("--log-format json server"));
        assert!(!on_system("proxy"));
        assert!(!on_system("agent --simulate --nodes 1000"));
        assert!(!on_system(""));
    }

    #[test]
    fn this_process_chose_by_its_own_command_line() {
        // The test binary's constructor saw the harness's arguments.
        let args: Vec<String> = std::env::args().skip(1).collect();
        let expected = match on_system_malloc(args.iter().map(|a| a.as_bytes())) {
            true => SYSTEM,
            false => MIMALLOC,
        };
        assert_eq!(CHOICE.load(Relaxed), expected);
    }
}
