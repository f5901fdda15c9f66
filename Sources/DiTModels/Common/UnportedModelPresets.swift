import TeaCache

/// Reference presets of models whose families have not landed in this package yet, or never will
/// (HiDream-I1); listed by ``DiTFamilies/presets`` so that every reference preset stays reachable by
/// name. A family that lands takes its presets out of ``unportedModels`` into ``DiTFamily/presets``.
extension TeaCachePreset {
    /// HiDream-I1-Full: first 10% of the steps retained, last step not forced. Default δ 0.3.
    public static let hiDream = TeaCachePreset(
        reference: "hidream_i1",
        [-3.13605009e+04, -7.12425503e+02, 4.91363285e+01, 8.26515490e+00, 1.08053901e-01],
        defaultThreshold: 0.3, speedups: [(0.17, 1.5), (0.25, 1.7), (0.3, 2.0), (0.45, 2.6)],
        modulatedInput: "t_embedder(timesteps) (pure timestep embedding)",
        provenance: "TeaCache4HiDream-I1/teacache_hidream_i1.py",
        schedule: TeaCacheSchedule(retainFirstSteps: 1, forceLastStep: false, startFraction: 0.1))

    /// Presets without a registered family: HiDream-I1 (no diffusers port here).
    public static var unportedModels: [TeaCachePreset] {
        [hiDream]
    }
}
