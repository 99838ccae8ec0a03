"""Reports: tables of runs (`tables`) and the study report in HTML and Markdown (`study`)."""
