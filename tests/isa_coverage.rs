//! Which ISAs the per-ISA tests of this run cover: each test iterates `Isa::available()`, so
//! an ISA this CPU lacks is silently left out. This prints every ISA as tested or skipped, and
//! `DROPNORM_REQUIRE_ISA=avx512` (a comma-separated list; .ci/run sets it when the CPU has
//! AVX-512) turns a skip of a required ISA into a failure.

use dropnorm::Isa;

#[test]
fn required_isas_are_tested() {
    for isa in Isa::ALL {
        let state = if isa.is_available() {
            "tested"
        } else {
            "SKIPPED (not on this CPU)"
        };
        println!("isa {isa}: {state}");
    }
    let required = std::env::var("DROPNORM_REQUIRE_ISA").unwrap_or_default();
    for name in required.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let isa: Isa = name
            .parse()
            .unwrap_or_else(|e| panic!("DROPNORM_REQUIRE_ISA: {e:?}"));
        assert!(
            isa.is_available(),
            "DROPNORM_REQUIRE_ISA names {isa}, which this CPU (or target) lacks: its per-ISA tests would be skipped"
        );
    }
}
