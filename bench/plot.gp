# Throughput and memory against concurrency, keypost and Postfix on one chart.
# gnuplot -e "datafile='sweep.dat'; outfile='sweep.png'" bench/plot.gp
# Columns of datafile (written by bench/bench.py):
#   1 sessions, 2 keypost msg/s, 3 keypost peak PSS MB, 4 keypost PSS MB with idle sessions held,
#   5 Postfix msg/s, 6 Postfix peak PSS MB, 7 Postfix PSS MB with idle sessions held
if (!exists("datafile")) datafile = 'sweep.dat'
if (!exists("outfile")) outfile = 'sweep.png'
if (!exists("pfmax")) pfmax = 1000

if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
    set terminal pngcairo size 1100,650 enhanced font "sans,10"
} else {
    set terminal png size 1100,650
}
set output outfile
set title "keypost vs Postfix: throughput and memory against concurrency\n(STARTTLS + client certificate, idle TLS sessions held, then 10 messages per session)"
set logscale x
set xlabel "concurrent sessions"
set xtics ("10" 10, "100" 100, "1,000" 1000, "10,000" 10000)
set xrange [7:14000]
set ylabel "messages/s"
set y2label "PSS of all server processes, MB"
set logscale y2
set ytics nomirror
set y2tics
set yrange [0:*]
set grid xtics ytics
set key outside bottom center horizontal
set label 1 sprintf("Postfix holds at most default_process_limit = %d sessions (one smtpd process each)", pfmax) at graph 0.01, graph 0.97 left font ",9" noenhanced
set datafile missing "NaN"
plot datafile using 1:2 axes x1y1 with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "keypost msg/s", \
     datafile using 1:5 axes x1y1 with linespoints lw 2 pt 5 lc rgb "#d62728" title "Postfix msg/s", \
     datafile using 1:4 axes x1y2 with linespoints lw 2 dt 2 pt 6 lc rgb "#1f77b4" title "keypost PSS, idle sessions held", \
     datafile using 1:7 axes x1y2 with linespoints lw 2 dt 2 pt 4 lc rgb "#d62728" title "Postfix PSS, idle sessions held", \
     datafile using 1:3 axes x1y2 with points pt 1 ps 1.5 lc rgb "#1f77b4" title "keypost peak PSS under load", \
     datafile using 1:6 axes x1y2 with points pt 2 ps 1.5 lc rgb "#d62728" title "Postfix peak PSS under load"
