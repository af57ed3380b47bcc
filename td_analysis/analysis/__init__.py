"""What is computed from a trained network: pruning masks and pruned evaluations (``pruning``),
the coadaptation matrix θᵀ⊙H⊙θ (``coadaptation``), Taylor estimates of the change in loss
(``taylor``), Hessian spectra (``spectra``) and statistics over seeds (``statistics``)."""
