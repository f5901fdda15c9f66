/// A reference port's single step counter shared by all its cache entries, which its forced-compute
/// rule reads in place of each entry's own step (``TeaCacheSchedule/sharedCounter``).
///
/// Most reference ports keep one counter per cache entry (or one per call that the branches split
/// evenly), which ``TeaCacheSchedule`` expresses as per-branch steps. TeaCache4Lumina2 keys its entries
/// by the joint sequence length and keeps **one** counter for all of them, advanced only by the calls
/// whose entry differs from the first entry it ever saw. Its forced steps (counter 0 and N − 1) are
/// then steps of that counter: with a cond call (first) and an uncond call of a different length per
/// step both calls of step i see i, as per-branch steps would; with a single entry — no CFG, or
/// cond and uncond of the same length — the counter never moves and every call is forced.
public enum TeaCacheSharedCounter: String, Codable, Sendable, CaseIterable {
    /// TeaCache4Lumina2: the counter starts at 0, is advanced (modulo the step count) after every call
    /// whose branch differs from the first branch the run saw, and is what the schedule's forced-step
    /// rules are applied to.
    case advancedByOtherBranchesThanFirst

    /// The counter after a call of `branch` (`first` is the run's first branch).
    func advanced(_ counter: Int, after branch: BranchKey, first: BranchKey, steps: Int) -> Int {
        switch self {
        case .advancedByOtherBranchesThanFirst:
            guard branch != first else { return counter }
            let next = counter + 1
            return next >= steps ? 0 : next
        }
    }
}
