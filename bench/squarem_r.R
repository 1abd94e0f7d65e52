# R's SQUAREM on two-component Gaussian mixtures with one known scale, one
# dataset at a time: the reference that bench/squarem_vs_r.py compares
# jaxgmm.fit(..., accelerate="squarem", fixed="scales") against.
#
#   Rscript bench/squarem_r.R DATA.csv OUT.csv PI MU1 MU2 SIGMA TOL [MAXITER]
#
# DATA.csv: one dataset per row, no header, all rows the same length.
# PI, MU1, MU2: the start (weight of the first component, the two means);
# SIGMA: the scale both components share, known; TOL: SQUAREM's tol (its
# default is 1e-7, the Euclidean norm of one EM step's change of the
# parameter vector); MAXITER: its maxiter (a cap on fixed-point evaluations,
# default 1500 in SQUAREM; the comparison passes jaxgmm's cap).
#
# Everything else is SQUAREM::squarem's default control: method 3 (SqS3),
# step.min0 = 1, step.max0 = 1, mstep = 4, objfn.inc = 1 (an extrapolation is
# accepted unless it raises the negative log-likelihood by more than 1).  With
# an objective given, squarem runs squarem1, which evaluates the objective once
# per cycle at the new point (and once more at the fallback when it rejects).
#
# OUT.csv, one row per dataset: fpevals (fixed-point evaluations = E-steps),
# objfevals (objective evaluations, each another pass over the data), iter
# (cycles), the final parameters, loglik (the log-likelihood at the returned
# parameters, computed here and not counted: squarem's value.objfn is that of
# the point before the last EM step when it stops on a small first step),
# convergence (squarem's flag: TRUE unless fpevals reached maxiter) and error
# (1 when squarem stopped with an error, e.g. a non-finite EM step; the
# parameters are then NA).

suppressPackageStartupMessages(library(SQUAREM))

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 7) {
  stop("usage: Rscript squarem_r.R DATA.csv OUT.csv PI MU1 MU2 SIGMA TOL [MAXITER]")
}
data <- as.matrix(read.csv(args[1], header = FALSE, colClasses = "numeric"))
start <- as.numeric(args[3:5])
sigma <- as.numeric(args[6])
tol <- as.numeric(args[7])
maxiter <- if (length(args) >= 8) as.numeric(args[8]) else 1500

# One EM step for p = (pi, mu1, mu2): what a user would write, on raw
# parameters (SQUAREM extrapolates in these coordinates).
em_step <- function(p, x, sigma) {
  a1 <- p[1] * dnorm(x, p[2], sigma)
  a2 <- (1 - p[1]) * dnorm(x, p[3], sigma)
  r <- a1 / (a1 + a2)
  s1 <- sum(r)
  c(s1 / length(x), sum(r * x) / s1, sum((1 - r) * x) / (length(x) - s1))
}

# The objective squarem minimises: the negative log-likelihood.  An extrapolated
# weight outside [0, 1] makes it NaN, which squarem treats as a rejection.
neg_loglik <- function(p, x, sigma) {
  -sum(log(p[1] * dnorm(x, p[2], sigma) + (1 - p[1]) * dnorm(x, p[3], sigma)))
}

fit_one <- function(x) {
  res <- tryCatch(
    suppressWarnings(squarem(start, fixptfn = em_step, objfn = neg_loglik, x = x, sigma = sigma,
                             control = list(tol = tol, maxiter = maxiter))),
    error = function(e) NULL)
  if (is.null(res)) {
    return(c(fpevals = NA, objfevals = NA, iter = NA, pi = NA, mu1 = NA, mu2 = NA, loglik = NA,
             convergence = 0, error = 1))
  }
  c(fpevals = res$fpevals, objfevals = res$objfevals, iter = res$iter,
    pi = res$par[1], mu1 = res$par[2], mu2 = res$par[3],
    loglik = -suppressWarnings(neg_loglik(res$par, x, sigma)),
    convergence = as.numeric(res$convergence), error = 0)
}

t0 <- proc.time()[["elapsed"]]
out <- t(apply(data, 1, fit_one))
elapsed <- proc.time()[["elapsed"]] - t0
# 17 significant digits: write.csv's 15 would round the log-likelihoods (about
# -1e3) to 1e-12, near the differences the comparison looks at.
text <- apply(out, 2, function(v) ifelse(is.na(v), "NA", sprintf("%.17g", v)))
write.csv(matrix(text, nrow = nrow(out), dimnames = list(NULL, colnames(out))), args[2],
          row.names = FALSE, quote = FALSE)
cat(sprintf("squarem_r.R: %d datasets, tol %g, %.2f s, SQUAREM %s, %s\n", nrow(data), tol, elapsed,
            as.character(packageVersion("SQUAREM")), R.version.string))
