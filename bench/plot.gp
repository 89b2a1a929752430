# The plot of bench/results/REPORT.md: end-to-end throughput against the
# SMTP ceiling, and the distributions of worker replacement latency
# (digestd and php-fpm, same harness).  bench/run.py writes the .dat files
# and calls:  gnuplot -e "outdir='bench/results'" bench/plot.gp
if (!exists("outdir")) outdir = "bench/results"
if (!exists("have_cdf")) have_cdf = 1

set terminal pngcairo size 1200,500 font "sans,10"
set output outdir."/bench.png"
set multiplot layout 1,2 title "digestd: make bench"

set title "End to end: emails/s to postfix's smtp-sink"
set style data histogram
set style fill solid 0.7 border -1
set boxwidth 0.6
set yrange [0:*]
set ylabel "emails/s"
set grid ytics
unset key
plot outdir."/throughput.dat" using 2:xtic(1) lc rgb "#3366aa"

set title "Worker replacement latency (CDF over kills)"
set style data lines
set logscale x
set xrange [0.05:*]
set xlabel "ms after SIGKILL (log scale)"
set ylabel "fraction of kills"
set yrange [0:1]
set key bottom right
if (!have_cdf) {
	set label 1 "not measured in this run" at graph 0.5, graph 0.5 center
	plot 2 notitle lc rgb "white"
} else {
	plot outdir."/cdf_digestd_fork.dat" using 1:2 lw 2 title "digestd: new worker forked", \
	     outdir."/cdf_php_fpm_fork.dat" using 1:2 lw 2 title "php-fpm: new child forked", \
	     outdir."/cdf_digestd_ready.dat" using 1:2 lw 2 title "digestd: new worker ready"
}
unset multiplot
