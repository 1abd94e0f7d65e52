# mclust's parametric bootstrap LRT, for bench/lrt.py and tests/test_lrt.py.
#
# Rscript bench/lrt_mclust.R FILE MODEL G NBOOT MODE [SEED [TOL]]
#   FILE: one number a line.  MODEL: mclust model name ("V", "E").
#   MODE "mclust": mclustBootstrapLRT(x, MODEL, nboot = NBOOT, maxG = G), which
#     runs 1 vs 2, ..., G vs G + 1; prints one line per test.
#   MODE "step": only G vs G + 1, timed alone: the loop of mclustBootstrapLRT
#     (mclust 6.0.0) for that one G, calling the same mclust functions.
# Output lines: "lrt G OBS P ELAPSED_S" (ELAPSED_S: that call; in "mclust" mode
# the whole call, on every line); "step" mode adds "boot MEAN SD" of the
# bootstrap statistics.
suppressMessages(library(mclust))
args <- commandArgs(trailingOnly = TRUE)
x <- scan(args[1], quiet = TRUE)
model <- args[2]; G <- as.integer(args[3]); nboot <- as.integer(args[4]); mode <- args[5]
if (length(args) >= 6) set.seed(as.integer(args[6]))
# TOL: emControl's tol (mclust's default c(1e-5, sqrt(eps)): relative change of the log-likelihood).
ctrl <- if (length(args) >= 7) emControl(tol = c(as.numeric(args[7]), as.numeric(args[7]))) else emControl()
if (mode == "mclust") {
  t <- system.time(r <- mclustBootstrapLRT(x, modelName = model, nboot = nboot, maxG = G, verbose = FALSE,
                                            control = ctrl))
  for (g in seq_along(r$obs)) cat("lrt", g, sprintf("%.10g", r$obs[g]), sprintf("%.10g", r$p.value[g]),
                                  t[["elapsed"]], "\n")
} else {
  t <- system.time({
    BIC <- mclustBIC(x, G = c(G, G + 1), modelNames = model, warn = FALSE, verbose = FALSE, control = ctrl)
    Mod0 <- summary(BIC, x, G = G, modelNames = model)
    Mod1 <- summary(BIC, x, G = G + 1, modelNames = model)
    obs <- 2 * (Mod1$loglik - Mod0$loglik)
    boot <- numeric(nboot); b <- 0
    while (b < nboot) {
      b <- b + 1
      s <- sim(Mod0$modelName, Mod0$parameters, n = Mod0$n)
      m0 <- em(data = s[, -1], modelName = Mod0$modelName, parameters = Mod0$parameters, warn = FALSE, control = ctrl)
      m1 <- em(data = s[, -1], modelName = Mod1$modelName, parameters = Mod1$parameters, warn = FALSE, control = ctrl)
      l <- 2 * (m1$loglik - m0$loglik)
      if (is.na(l)) { b <- b - 1; next }  # mclust redraws such replicates
      boot[b] <- l
    }
    p <- (1 + sum(boot >= obs)) / (nboot + 1)
  })
  cat("lrt", G, sprintf("%.10g", obs), sprintf("%.10g", p), t[["elapsed"]], "\n")
  cat("boot", sprintf("%.10g", mean(boot)), sprintf("%.10g", sd(boot)), "\n")
}
