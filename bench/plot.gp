# gnuplot -e "dir='RESULTS'; which='ram.dat'|'scaling.dat'" plot.gp
# Plots made by bench.py from the medians it wrote into RESULTS.
set terminal pngcairo size 960,720 enhanced font "sans,11"
set grid xtics ytics mytics
set key box center bottom at screen 0.5, screen 0.01
set bmargin at screen 0.30
set style data linespoints
set datafile missing "NaN"
set logscale y 10
set format y "10^{%L}"

if (which eq 'ram.dat') {
	set output dir.'/checkpoint-vs-ram.png'
	set title "Checkpoint time of one VM vs guest RAM (log scales; medians)"
	set xlabel "guest RAM (MiB)"
	set ylabel "time (ms)"
	stats dir.'/ram.dat' using 1 nooutput
	set logscale x 2
	set xtics (256, 512, 1024, 2048, 4096, 8192, 16384)
	set xrange [STATS_min / 1.4 : STATS_max * 1.4]
	plot dir.'/ram.dat' using 1:5 title "full copy (stop + migrate to file + fsync, like virsh save)" lw 2 pt 7, \
	     ''            using 1:6 title "mapped-ram + multifd ×4 to file + fsync" lw 2 pt 5, \
	     ''            using 1:2 title "in-place: host-upgrade checkpoint (whole command)" lw 2 pt 9, \
	     ''            using 1:3 title "in-place: host-upgrade stop → saved" lw 2 pt 11, \
	     ''            using 1:4 title "in-place: raw QMP migrate (floor)" lw 2 pt 13 dt 2
}
if (which eq 'scaling.dat') {
	set output dir.'/scaling.png'
	set title "host-upgrade with N VMs (128 MiB each, RAM in place; log scales; medians)"
	set xlabel "VMs"
	set ylabel "time (ms)"
	stats dir.'/scaling.dat' using 1 nooutput
	set logscale x 2
	set xtics (1, 2, 4, 8, 16, 32, 64)
	set xrange [STATS_min / 1.4 : STATS_max * 1.4]
	plot dir.'/scaling.dat' using 1:2 title "checkpoint all (command)" lw 2 pt 7, \
	     ''                 using 1:3 title "restore all (command)" lw 2 pt 5, \
	     ''                 using 1:4 title "blackout per VM, median" lw 2 pt 9, \
	     ''                 using 1:5 title "blackout per VM, max" lw 2 pt 11, \
	     ''                 using 1:6 title "prelaunch: run --no-reboot all (command)" lw 2 pt 13 dt 2, \
	     ''                 using 1:7 title "prelaunch: blackout per VM, median" lw 2 pt 9 dt 2, \
	     ''                 using 1:8 title "prelaunch: blackout per VM, max" lw 2 pt 11 dt 2
}
