import TeaCache

/// The reference repository's FLUX and TangoFlux coefficients (ali-vilab/TeaCache @ 7c10efc, copied
/// character for character from teacache-spec.md §2.2) and its published thresholds and speedups.
extension TeaCachePreset {
    static let fluxCoefficients = [4.98651651e+02, -2.83781631e+02, 5.58554382e+01, -3.82021401e+00, 2.64230861e-01]
    static let adaLNZeroModulatedInput =
        "transformer_blocks[0].norm1(h_in, emb=temb)[0] (LayerNorm(x)·(1+scale_msa)+shift_msa, image tokens)"

    /// FLUX.1-dev. Default δ 0.6 (0.25 → 1.5×, 0.4 → 1.8×, 0.6 → 2.0×, 0.8 → 2.25×).
    public static let flux = TeaCachePreset(
        reference: "flux", fluxCoefficients, defaultThreshold: 0.6,
        speedups: [(0.25, 1.5), (0.4, 1.8), (0.6, 2.0), (0.8, 2.25)],
        modulatedInput: adaLNZeroModulatedInput, provenance: "TeaCache4FLUX/teacache_flux.py")

    /// TangoFlux (FLUX coefficients). Default δ 0.25.
    public static let tangoFlux = TeaCachePreset(
        reference: "tangoflux", fluxCoefficients, defaultThreshold: 0.25, speedups: [(0.25, 1.7), (0.4, 2.1)],
        modulatedInput: adaLNZeroModulatedInput + " (audio tokens)",
        provenance: "TeaCache4TangoFlux/teacache_tango_flux.py")
}

/// The MagCache ratios diffusers 0.42.1 ships for FLUX.1 (`diffusers.hooks.mag_cache.FLUX_MAG_RATIOS`,
/// from Zehong-Ma/MagCache), calibrated on 28 steps; `MagCacheConfiguration/ratios(forSteps:)`
/// interpolates them for other step counts as diffusers does.
extension MagCachePreset {
    /// FLUX.1-dev / schnell.
    public static let flux = MagCachePreset(
        name: "flux",
        magRatios: [1.0, 1.21094, 1.11719, 1.07812, 1.0625, 1.03906, 1.03125, 1.03906, 1.02344, 1.03125, 1.02344,
                    0.98047, 1.01562, 1.00781, 1.0, 1.00781, 1.0, 1.00781, 1.0, 1.0, 0.99609, 0.99609, 0.98047,
                    0.98828, 0.96484, 0.95703, 0.93359, 0.89062],
        provenance: "diffusers 0.42.1 hooks/mag_cache.py FLUX_MAG_RATIOS (Zehong-Ma/MagCache)")
}
