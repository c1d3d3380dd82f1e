//! The shared library's soname on Linux: `libdropnorm.so.MAJOR.MINOR` while the major version
//! is 0 (a minor release may change the ABI then), `libdropnorm.so.MAJOR` after. capi/install.sh
//! installs the library under that name, so programs linked against it find it again.

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_default();
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_default();
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        let soname = if major == "0" {
            format!("libdropnorm.so.{major}.{minor}")
        } else {
            format!("libdropnorm.so.{major}")
        };
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
