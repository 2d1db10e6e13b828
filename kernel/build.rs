//! Links the kernel with `linker/kernel.ld` when building for the bare-metal target.
//! Cargo does not track linker scripts by itself, hence the rerun-if-changed.

fn main() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../linker/kernel.ld");
    println!("cargo:rerun-if-changed={script}");
    println!("cargo:rerun-if-changed=src/arch/aarch64/boot.s");
    println!("cargo:rerun-if-changed=src/arch/aarch64/vectors.s");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{script}");
    }
}
