set terminal pngcairo size 900,600 enhanced font 'Sans,11'
set output '/work/main/launch/scaling-study/zoo-2026-12-06/bn/throughput.png'
set title 'Training throughput (vm, 2 cores)'
set ylabel 'images / s'
set yrange [0:*]
set xtics ("1" 1, "2" 2, "4" 4)
set logscale x 2
set xrange [0.7692307692307692:5.2]
set grid
set key top left
set xlabel 'MPI ranks'
set arrow 1 from 2, graph 0 to 2, graph 1 nohead dt 3 lc rgb 'gray40'
set label 1 '2 cores' at 2, graph 0.97 offset 0.5,0 left textcolor rgb 'gray40'
plot '/work/main/launch/scaling-study/zoo-2026-12-06/bn/plot-weak.dat' using 1:2 with linespoints lw 2 pt 7 lc rgb '#d62728' dt 1 title 'weak scaling', '/work/main/launch/scaling-study/zoo-2026-12-06/bn/plot-weak-h2.dat' using 1:2 with linespoints lw 2 pt 5 lc rgb '#d62728' dt 4 title 'weak, 2 hosts', '/work/main/launch/scaling-study/zoo-2026-12-06/bn/plot-weak.dat' using 1:3 with lines dt 2 lc rgb '#d62728' title 'weak: ideal'
set output '/work/main/launch/scaling-study/zoo-2026-12-06/bn/efficiency.png'
set title 'Parallel efficiency (vm, 2 cores)'
set ylabel 'efficiency (%)'
set yrange [0:*]
set key top right
plot 100 with lines dt 2 lc rgb 'gray40' title 'ideal', '/work/main/launch/scaling-study/zoo-2026-12-06/bn/plot-weak.dat' using 1:4 with linespoints lw 2 pt 7 lc rgb '#d62728' dt 1 title 'weak scaling', '/work/main/launch/scaling-study/zoo-2026-12-06/bn/plot-weak-h2.dat' using 1:4 with linespoints lw 2 pt 5 lc rgb '#d62728' dt 4 title 'weak, 2 hosts'
unset arrow 1
unset label 1
unset logscale x
set autoscale x
set xtics ()
set yrange [0:*]
set key invert
set style data histograms
set style histogram rowstacked
set style fill solid 0.85 border -1
set boxwidth 0.6
set key outside right top
set ylabel 'ms per step (mean over ranks)'
set xlabel 'MPI ranks (HxR: H namespace hosts x R ranks)'
set output '/work/main/launch/scaling-study/zoo-2026-12-06/bn/breakdown-weak.png'
set title 'Where a step goes: weak scaling, 64 per rank (vm, 2 cores)'
plot '/work/main/launch/scaling-study/zoo-2026-12-06/bn/breakdown-weak.dat' using 5:xtic(1) title 'data', '' using 6 title 'forward', '' using 7 title 'backward', '' using 8 title 'comm wait', '' using 9 title 'optimizer', '' using 10 title 'checkpoint', '' using 11 title 'other'
