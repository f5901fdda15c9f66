import TeaCache

/// Reference presets of models whose families have not landed in this package yet; listed by
/// ``DiTFamilies/presets`` so that every reference preset stays reachable by name. A family that lands
/// takes its presets out of ``unportedModels`` into ``DiTFamily/presets`` (HiDream-I1 did: its presets
/// are `HiDreamI1Family.presets`).
extension TeaCachePreset {
    /// Presets without a registered family: none at the moment.
    public static var unportedModels: [TeaCachePreset] {
        []
    }
}
