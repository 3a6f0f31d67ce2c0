(function(){
  function note(msg){
    var list=document.getElementById('report-errors');
    if(!list){(window.__lsmapEarlyErrors=window.__lsmapEarlyErrors||[]).push(msg);return;}
    var li=document.createElement('li');li.textContent=msg;list.appendChild(li);
    document.getElementById('errors-box').hidden=false;document.body.setAttribute('data-errors',String(list.children.length));
  }
  window.__lsmapNote=note;
  window.addEventListener('error',function(e){note('script error: '+e.message+' ('+(e.filename||'')+':'+(e.lineno||0)+')');});
  document.addEventListener('securitypolicyviolation',function(e){note('blocked request: '+e.blockedURI+' ('+e.violatedDirective+')');});
  document.addEventListener('DOMContentLoaded',function(){(window.__lsmapEarlyErrors||[]).forEach(note);});
})();
